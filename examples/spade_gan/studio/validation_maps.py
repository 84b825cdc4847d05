"""The validation label maps a painting can start from: the built-in scenes' val split, or a folder of label PNGs.

For a model of the built-in scenes the maps are the val split the training run evaluates on (seed 0, rendered at the
model's size, as :func:`spade_gan.training.prepare.eval_dataset` makes them). For any model, a folder of label PNGs
(for instance ``ADEChallengeData2016/annotations/validation``) can be given instead; its maps are read when asked for
and resized with nearest-neighbour sampling, as ``synthesize.py`` reads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.io import read_label
from ..data.synthetic import render_scene
from ..data.transforms import Geometry, apply_to_ids
from ..synthesis.inference import label_files
from .errors import StudioError

SYNTHETIC_VAL_MAPS = 64
"""Validation maps of the built-in scenes (the training run's ``--eval-images`` default)."""


class ValidationMaps:
    """Label maps by index: ``count`` synthetic val scenes, or the label PNGs of ``folder``, or none.

    Args:
        synthetic: how many val scenes of the built-in dataset to offer (0: none).
        folder: a folder of label PNGs (its ``*_labelIds.png`` files in a Cityscapes folder), used instead.
    """

    def __init__(self, synthetic: int = 0, folder: str | Path | None = None) -> None:
        self.files = label_files(folder) if folder is not None else []
        self.synthetic = 0 if folder is not None else synthetic

    def __len__(self) -> int:
        return len(self.files) or self.synthetic

    def get(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """Map ``index`` as int64 ``(H, W)`` ids at ``size`` (raw ids: dontcare may still be 255).

        Raises:
            StudioError: an index outside ``0 .. len - 1`` (404), or a file that cannot be read (400).
        """
        if not len(self):
            raise StudioError("no validation maps: start paint.py with --val-labels DIR to offer some", status=404)
        if not 0 <= index < len(self):
            raise StudioError(f"validation map {index}: expected an index in 0..{len(self) - 1}", status=404)
        if not self.files:
            return render_scene(0, "val", index, size)[0]
        try:
            ids = read_label(self.files[index])
        except (OSError, ValueError) as exc:
            raise StudioError(str(exc)) from None
        if ids.shape != size:
            ids = apply_to_ids(ids, Geometry(resize=size, crop=(0, 0, *size), flip=False))
        return np.ascontiguousarray(ids, dtype=np.int64)
