"""Segmentation scores of generated images with a segmenter the user supplies (a ``torch.export`` or TorchScript file).

The published protocols segment the generated images with DRN-D-105 (Cityscapes), UperNet (ADE20K) or DeepLab-v2
(COCO-Stuff) and report mIoU and pixel accuracy against the input label maps. Those checkpoints are not shipped
here; export the one you trust and pass the file: ``torch.export.save(torch.export.export(model, (example,),
dynamic_shapes=...), "seg.pt2")`` with a dynamic batch dimension (the last batch may be smaller), or a TorchScript
file from ``torch.jit.save`` (deprecated by PyTorch, still read):

* input: a float batch ``(N, 3, h, w)``, the generated images resized (bilinear) to ``--segmenter-size`` if given,
  scaled by ``--segmenter-input``: ``unit`` ``[0, 1]``, ``imagenet`` (``[0, 1]`` then ImageNet mean / std), or
  ``tanh`` (``[-1, 1]``, the generator's own range);
* output: logits ``(N, K, h', w')`` (or a tuple / dict whose first / ``"out"`` entry is), upsampled (bilinear) to the
  label map's size before the argmax;
* classes: output channel ``k`` is dataset label id ``k`` when ``K`` equals the dataset's ``label_nc``; otherwise
  ``--segmenter-classes FILE`` gives a JSON list of ``K`` dataset ids (``-1`` for channels with no dataset class).

Pixels labelled don't-care (255) are ignored. A pixel predicted as an unmapped channel is wrong: it lowers the
accuracy and counts in its true class's union. mIoU averages the IoU of the classes present in the labels or the
predictions.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .alignment import scores

SegmenterInput = Literal["unit", "imagenet", "tanh"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SegmenterError(ValueError):
    """An unusable segmenter file, class mapping or output; the message names the flag and the file."""


def read_class_mapping(path: str | os.PathLike[str], num_classes: int) -> Tensor:
    """The ``--segmenter-classes`` file: a JSON list of dataset ids in ``[-1, num_classes)``, one per output channel.

    Raises:
        SegmenterError: no such file, not a JSON list of ints, or an id out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise SegmenterError(f"--segmenter-classes {path}: no such file")
    try:
        ids = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SegmenterError(f"--segmenter-classes {path}: not JSON ({exc})") from exc
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise SegmenterError(f"--segmenter-classes {path}: expected a non-empty JSON list of ints, got {ids!r:.80}")
    bad = [i for i in ids if not -1 <= i < num_classes]
    if bad:
        raise SegmenterError(
            f"--segmenter-classes {path}: ids must lie in [-1, {num_classes}) (dataset label_nc={num_classes}), "
            f"got {bad[:5]}"
        )
    return torch.tensor(ids, dtype=torch.long)


def load_segmenter(path: Path, device: str | torch.device = "cpu") -> Callable[[Tensor], Any]:
    """The model in ``path``: a ``torch.export`` program (``torch.export.load``) or a TorchScript module.

    Raises:
        SegmenterError: the file is neither.
    """
    try:
        return torch.export.load(str(path)).module().to(device)
    except Exception:  # not an exported program: try TorchScript
        pass
    try:
        with warnings.catch_warnings():
            for category in (DeprecationWarning, FutureWarning):  # torch.jit.load is deprecated since torch 2.13
                warnings.simplefilter("ignore", category)
            return torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as exc:
        raise SegmenterError(
            f"--segmenter {path}: neither a torch.export program nor a TorchScript file ({type(exc).__name__})"
        ) from exc


class SegmenterScorer:
    """Accumulates the confusion matrix of a segmenter's predictions on images against label maps.

    Args:
        path: the exported or TorchScript model (``--segmenter``).
        num_classes: the dataset's ``label_nc``.
        mapping: output channel -> dataset id (``-1``: none), from :func:`read_class_mapping`; ``None``: identity,
            which needs ``K == num_classes``.
        size: ``(h, w)`` the images are resized to before segmentation, or ``None``.
        input_range: how images are scaled (see the module docstring).
        device: where the segmenter runs.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        num_classes: int,
        *,
        mapping: Tensor | None = None,
        size: tuple[int, int] | None = None,
        input_range: SegmenterInput = "unit",
        device: str | torch.device = "cpu",
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SegmenterError(f"--segmenter {self.path}: no such file")
        self.model = load_segmenter(self.path, device)
        if input_range not in ("unit", "imagenet", "tanh"):
            raise ValueError(f"input_range must be 'unit', 'imagenet' or 'tanh', got {input_range!r}")
        self.num_classes = num_classes
        self.mapping = mapping
        self.size = size
        self.input_range = input_range
        self.device = torch.device(device)
        self.confusion = torch.zeros(num_classes, num_classes + 1, dtype=torch.long)
        """Rows: true class; columns: predicted class, the last one "unmapped"."""

    def _prepare(self, images: Tensor) -> Tensor:
        x = images.float().to(self.device)
        if self.size is not None:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        if self.input_range == "tanh":
            return x
        x = (x + 1) / 2
        if self.input_range == "imagenet":
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
            x = (x - mean) / std
        return x

    @torch.no_grad()
    def predict(self, images: Tensor, size: tuple[int, int]) -> Tensor:
        """Dataset ids ``(N, *size)`` predicted for images ``(N, 3, H, W)`` in ``[-1, 1]`` (``-1``: unmapped)."""
        try:
            out = self.model(self._prepare(images))
        except (RuntimeError, ValueError, AssertionError) as exc:  # e.g. an exported program's shape guards
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SegmenterError(
                f"--segmenter {self.path} failed on a batch of shape {tuple(images.shape)} after resizing to "
                f"{self.size or 'none'}: {first}"
            ) from exc
        if isinstance(out, dict):
            out = out.get("out", next(iter(out.values())))
        elif isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, Tensor) or out.dim() != 4 or out.shape[0] != images.shape[0]:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise SegmenterError(
                f"--segmenter {self.path}: expected logits (N={images.shape[0]}, K, h, w), got {shape}"
            )
        k = out.shape[1]
        if self.mapping is None and k != self.num_classes:
            raise SegmenterError(
                f"--segmenter {self.path} predicts K={k} classes but the dataset has label_nc={self.num_classes}; "
                "pass --segmenter-classes FILE (a JSON list of K dataset ids, -1 for none)"
            )
        if self.mapping is not None and len(self.mapping) != k:
            raise SegmenterError(
                f"--segmenter-classes lists {len(self.mapping)} ids but --segmenter {self.path} predicts K={k} classes"
            )
        logits = F.interpolate(out.float(), size=size, mode="bilinear", align_corners=False)
        pred = logits.argmax(1).cpu()
        return self.mapping[pred] if self.mapping is not None else pred

    def update(self, images: Tensor, labels: Tensor) -> None:
        """Add images ``(N, 3, H, W)`` in ``[-1, 1]`` and their integer label maps ``(N, H, W)`` (255: don't care)."""
        pred = self.predict(images, tuple(labels.shape[-2:]))
        valid = labels != 255
        labels, pred = labels[valid].long(), pred[valid]
        pred = torch.where(pred < 0, self.num_classes, pred)
        if labels.numel() and int(labels.max()) >= self.num_classes:
            raise SegmenterError(f"labels: ids must lie in [0, {self.num_classes}) or be 255, got {int(labels.max())}")
        index = labels * (self.num_classes + 1) + pred
        self.confusion += torch.bincount(index, minlength=self.confusion.numel()).reshape(self.confusion.shape)

    def compute(self) -> dict[str, float]:
        """``{"accuracy", "miou"}`` over everything added.

        Raises:
            ValueError: nothing was added.
        """
        return scores(self.confusion)
