"""Scoring a generator on a labelled dataset: alignment, FID / KID and segmenter scores, with the images saved.

One pass over the dataset generates an image per label map (in order, batch by batch) and feeds every metric that is
switched on:

* ``alignment``: the built-in class read-back of :mod:`spade_gan.scoring.alignment` (synthetic scenes only, no
  weights);
* ``fid`` / ``kid_mean`` / ``kid_std``: :mod:`spade_gan.scoring.fidelity` between the generated and the real images of
  the same items (needs the Inception weights);
* ``segmenter``: accuracy and mIoU of a user-supplied segmenter (:mod:`spade_gan.scoring.segmenter`).

Used by ``evaluate.py``, by ``train_spade.py --eval-every`` and by ``ablation.py``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import default_collate

from ..data.build import LabelledDataset
from ..images import to_uint8
from . import fidelity
from .alignment import AlignmentMeter
from .segmenter import SegmenterScorer

GenerateFn = Callable[[Mapping[str, Any]], Tensor]
"""Images ``(N, 3, H, W)`` in ``[-1, 1]`` (any device) for a collated batch of dataset items."""

SYNTHETIC_EVAL_IMAGES = 64
"""Default number of held-out built-in scenes (the training run's ``--eval-images`` default)."""


@dataclass
class QualityOptions:
    """What to compute and where to put the images.

    Attributes:
        alignment: score with the built-in class read-back (synthetic scenes only).
        inception: the feature extractor of :func:`spade_gan.scoring.fidelity.load_inception`, or ``None`` (no FID /
            KID).
        segmenter: a :class:`~spade_gan.scoring.segmenter.SegmenterScorer`, or ``None``.
        kid_subsets, kid_subset_size: KID's subsets (the size is capped by the number of images).
        image_dir: where each generated image is written as ``<index>.png``; ``None``: not saved.
        batch_size: items per generator call.
        progress: show a progress bar on stderr.
    """

    alignment: bool = False
    inception: nn.Module | None = None
    segmenter: SegmenterScorer | None = None
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    image_dir: Path | None = None
    batch_size: int = 16
    progress: bool = False

    @property
    def anything(self) -> bool:
        """Whether a metric is switched on."""
        return self.alignment or self.inception is not None or self.segmenter is not None


def score_generator(generate: GenerateFn, dataset: LabelledDataset, options: QualityOptions) -> dict[str, Any]:
    """Generate an image for every item of ``dataset`` and score them as ``options`` says.

    Returns:
        ``{"num_images": N, "size": [H, W], "alignment": {...}, "fid": ..., "kid_mean": ..., "kid_std": ...,
        "segmenter": {...}}`` with only the metrics that were computed.

    Raises:
        ValueError: an empty dataset, or FID / KID on fewer than 2 images.
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("the evaluation dataset is empty: no label maps to generate from")
    if options.inception is not None and n < 2:
        raise ValueError(f"FID/KID need at least 2 images, the evaluation dataset has {n}")
    alignment = AlignmentMeter() if options.alignment else None
    fake_features: list[Tensor] = []
    real_features: list[Tensor] = []
    if options.image_dir is not None:
        options.image_dir.mkdir(parents=True, exist_ok=True)
    bar = _progress(n, options.progress)
    size: list[int] = []
    for first, batch in item_batches(dataset, options.batch_size):
        fake = generate(batch).detach().float().cpu()
        labels, real = batch["label"][:, 0], batch["image"]
        size = list(fake.shape[-2:])
        if alignment is not None:
            alignment.update(fake, labels)
        if options.inception is not None:
            fake_features.append(fidelity.inception_features(options.inception, fake))
            real_features.append(fidelity.inception_features(options.inception, real))
        if options.segmenter is not None:
            options.segmenter.update(fake, labels)
        if options.image_dir is not None:
            save_images(fake, options.image_dir, first)
        if bar is not None:
            bar.update(len(labels))
    if bar is not None:
        bar.close()
    results: dict[str, Any] = {"num_images": n, "size": size}
    if alignment is not None:
        results["alignment"] = alignment.compute()
    if options.inception is not None:
        fake_f, real_f = torch.cat(fake_features), torch.cat(real_features)
        results["fid"] = fidelity.fid(fake_f, real_f)
        kid_mean, kid_std = fidelity.kid(
            fake_f, real_f, subsets=options.kid_subsets, subset_size=options.kid_subset_size
        )
        results["kid_mean"], results["kid_std"] = kid_mean, kid_std
    if options.segmenter is not None:
        results["segmenter"] = options.segmenter.compute()
    return results


def item_batches(dataset: LabelledDataset, batch_size: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(index of the first item, collated batch)`` for consecutive batches of ``batch_size`` items, in order (the
    last one may be smaller)."""
    for first in range(0, len(dataset), batch_size):
        yield first, default_collate([dataset[i] for i in range(first, min(len(dataset), first + batch_size))])


def save_images(images: Tensor, directory: str | os.PathLike[str], first_index: int) -> None:
    """Write images ``(N, 3, H, W)`` in ``[-1, 1]`` as ``<first_index + k>.png`` (5 digits) into ``directory``."""
    for k, array in enumerate(to_uint8(images)):
        Image.fromarray(array).save(Path(directory) / f"{first_index + k:05d}.png")


def format_results(results: Mapping[str, Any]) -> str:
    """The scores as a small table, one metric per line.

    Example:
        >>> print(format_results({"num_images": 4, "size": [64, 64], "alignment": {"accuracy": 0.9, "miou": 0.7}}))
        4 images at 64x64
          alignment    accuracy 0.900   mIoU 0.700
    """
    h, w = results["size"]
    lines = [f"{results['num_images']} images at {h}x{w}"]
    if "alignment" in results:
        a = results["alignment"]
        lines.append(f"  alignment    accuracy {a['accuracy']:.3f}   mIoU {a['miou']:.3f}")
    if "segmenter" in results:
        s = results["segmenter"]
        lines.append(f"  segmenter    accuracy {s['accuracy']:.3f}   mIoU {s['miou']:.3f}")
    if "fid" in results:
        lines.append(f"  FID          {results['fid']:.3f}")
        lines.append(f"  KID          {results['kid_mean']:.5f} +- {results['kid_std']:.5f}")
    return "\n".join(lines)


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="evaluate", unit="image", dynamic_ncols=True, file=sys.stderr)
