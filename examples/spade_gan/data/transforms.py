"""Resizing, cropping and flipping of (label, instance, image) triples as the original training pipeline does.

Choices (see :class:`Preprocess`): label and instance maps are resized with nearest-neighbour sampling (ids are
never blended), photos with PIL's bicubic filter, as in the original. In training the crop position is random and the
triple is flipped horizontally with probability 1/2; at test time the crop is centred and nothing is flipped. The
random draws come from ``torch``'s generator (the global one unless one is passed), so they follow
``torch.manual_seed`` and the per-worker seeding of ``DataLoader``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .presets import PreprocessMode

_MODES = ("fixed", "resize_and_crop", "scale_shortside_and_crop", "none")


@dataclass(frozen=True)
class Preprocess:
    """How inputs are brought to the training size. Output size is ``(round(crop_size / aspect_ratio), crop_size)``.

    Modes:
        ``fixed``: resize straight to the output size (Cityscapes: 512x256), no crop.
        ``resize_and_crop``: resize to ``(round(load_size / aspect_ratio), load_size)`` ignoring the input's aspect
            (the original's ADE20K/COCO mode: 286x286), then crop the output size.
        ``scale_shortside_and_crop``: keep the input's aspect; scale so the short side is ``load_size`` (or more where
            needed to cover the crop), then crop the output size.
        ``none``: no resize and no crop (only the training flip); items keep their file's size.

    Attributes:
        mode: one of the modes above.
        crop_size: output width.
        load_size: resize target before cropping; ``None`` means ``crop_size``.
        aspect_ratio: output width / height.
        train: random crop and random horizontal flip (else centred crop, no flip).
        flip: allow the training flip.
    """

    mode: PreprocessMode = "resize_and_crop"
    crop_size: int = 256
    load_size: int | None = None
    aspect_ratio: float = 1.0
    train: bool = True
    flip: bool = True

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"mode: expected one of {_MODES}, got {self.mode!r}")
        if self.crop_size < 1:
            raise ValueError(f"crop_size: expected a positive int, got {self.crop_size!r}")
        if self.load_size is not None and self.load_size < self.crop_size:
            raise ValueError(f"load_size: expected >= crop_size={self.crop_size}, got {self.load_size}")
        if not self.aspect_ratio > 0:
            raise ValueError(f"aspect_ratio: expected a positive number, got {self.aspect_ratio!r}")

    @property
    def output_size(self) -> tuple[int, int]:
        """``(height, width)`` of the items (``mode="none"`` keeps the file's size instead)."""
        return max(1, round(self.crop_size / self.aspect_ratio)), self.crop_size


@dataclass(frozen=True)
class Geometry:
    """One draw of the transform: resize to ``resize`` ``(h, w)``, crop ``(top, left, h, w)``, optional flip."""

    resize: tuple[int, int]
    crop: tuple[int, int, int, int]
    flip: bool


def draw_geometry(size: tuple[int, int], spec: Preprocess, generator: torch.Generator | None = None) -> Geometry:
    """Draw the resize/crop/flip for an input of ``size`` ``(h, w)``; random only when ``spec.train``."""
    h, w = size
    out_h, out_w = spec.output_size
    load = spec.load_size or spec.crop_size
    if spec.mode == "fixed":
        resize = (out_h, out_w)
    elif spec.mode == "resize_and_crop":
        resize = (max(out_h, round(load / spec.aspect_ratio)), load)
    elif spec.mode == "scale_shortside_and_crop":
        scale = max(load / min(h, w), out_h / h, out_w / w)
        resize = (max(out_h, round(h * scale)), max(out_w, round(w * scale)))
    else:
        resize = (h, w)
        out_h, out_w = h, w
    top, left = resize[0] - out_h, resize[1] - out_w
    if spec.train:
        top = int(torch.randint(top + 1, (), generator=generator))
        left = int(torch.randint(left + 1, (), generator=generator))
    else:
        top, left = top // 2, left // 2
    flip = spec.train and spec.flip and bool(torch.rand((), generator=generator) < 0.5)
    return Geometry(resize, (top, left, out_h, out_w), flip)


def apply_to_ids(ids: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Nearest-neighbour resize, crop and flip of an integer map ``(H, W)``; returns a new ``(h, w)`` array."""
    h, w = ids.shape
    rows = _nearest_index(h, geometry.resize[0])
    cols = _nearest_index(w, geometry.resize[1])
    top, left, ch, cw = geometry.crop
    rows, cols = rows[top : top + ch], cols[left : left + cw]
    if geometry.flip:
        cols = cols[::-1]
    return ids[np.ix_(rows, cols)]


def apply_to_image(image: Image.Image, geometry: Geometry) -> torch.Tensor:
    """Bicubic resize, crop and flip of an RGB PIL image; returns float32 ``(3, h, w)`` in ``[-1, 1]``."""
    if image.size != (geometry.resize[1], geometry.resize[0]):
        image = image.resize((geometry.resize[1], geometry.resize[0]), Image.Resampling.BICUBIC)
    top, left, ch, cw = geometry.crop
    array = np.asarray(image, dtype=np.uint8)[top : top + ch, left : left + cw]
    if geometry.flip:
        array = array[:, ::-1]
    # numpy arithmetic (a new array; PIL's buffer is read-only) keeps torch's intra-op threads out of data workers
    chw = np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)
    return torch.from_numpy(chw / np.float32(127.5) - np.float32(1.0))


def _nearest_index(size_in: int, size_out: int) -> np.ndarray:
    """Source index of each output pixel for nearest-neighbour resizing (pixel centres aligned, as PIL does)."""
    return np.minimum(((np.arange(size_out) + 0.5) * (size_in / size_out)).astype(np.int64), size_in - 1)
