"""One entry point for the training and synthesis scripts: a dataset by name, with the original defaults.

Each name maps to a builder in :data:`BUILDERS`; every builder takes the caller's :class:`DatasetOptions` and the
dataset's preset with those options already merged in (:func:`resolve_preset`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .folders import SegmentationFolder
from .layouts import ade20k_samples, cityscapes_samples, coco_samples, custom_samples
from .pairing import Sample
from .presets import PRESETS, PreprocessMode, Preset
from .synthetic import SyntheticScenes
from .transforms import Preprocess

LabelledDataset = SyntheticScenes | SegmentationFolder
"""What :func:`build_dataset` returns: a dataset with ``label_nc``, ``contain_dontcare``, ``use_instance`` and
``semantic_nc`` attributes, yielding the shared item format."""

CUSTOM_PRESET = Preset("custom", 1, False, False, 1.0, 256, 286, "resize_and_crop", "normal")
"""Defaults for ``custom`` (``label_nc`` must be given by the user)."""


@dataclass(frozen=True)
class DatasetOptions:
    """Where a dataset's files are and how its items are made; every ``None`` takes the preset's value.

    Attributes:
        split: ``train`` or ``val`` (Cityscapes also ``test``).
        train: random crop and flip; ``None`` means ``split == "train"``. At test time ``load_size`` defaults to
            ``crop_size`` (no crop), as in the original.
        dataroot: the dataset's root folder (``cityscapes``, ``ade20k``, ``coco``).
        label_dir, image_dir, instance_dir: the folders of ``custom`` (``instance_dir`` optional).
        label_nc, contain_dontcare, use_instance: the label layout (``label_nc`` is required for ``custom``).
        crop_size, load_size, aspect_ratio, preprocess: geometry, see :class:`~spade_gan.data.transforms.Preprocess`;
            a ``crop_size`` without ``load_size`` keeps the preset's load/crop ratio (286/256 for ADE20K and COCO).
            The synthetic scenes are rendered directly at ``(round(crop_size / aspect_ratio), crop_size)``.
        num_images, seed: synthetic data only (default 1024 images for ``train``, 64 for ``val``).
        generator: torch generator for the random crop and flip of the folder datasets.
    """

    split: str = "train"
    train: bool | None = None
    dataroot: str | Path | None = None
    label_dir: str | Path | None = None
    image_dir: str | Path | None = None
    instance_dir: str | Path | None = None
    label_nc: int | None = None
    contain_dontcare: bool | None = None
    use_instance: bool | None = None
    crop_size: int | None = None
    load_size: int | None = None
    aspect_ratio: float | None = None
    preprocess: PreprocessMode | None = None
    num_images: int | None = None
    seed: int = 0
    generator: torch.Generator | None = None

    @property
    def is_train(self) -> bool:
        """Whether items get the training augmentation (random crop and flip)."""
        return self.split == "train" if self.train is None else self.train


def preset_for(name: str) -> Preset:
    """The defaults of dataset ``name``: its :data:`~spade_gan.data.presets.PRESETS` entry or :data:`CUSTOM_PRESET`."""
    return CUSTOM_PRESET if name == "custom" else PRESETS[name]


def resolve_preset(name: str, options: DatasetOptions) -> Preset:
    """The preset of ``name`` with the values given in ``options`` in place of its defaults.

    ``load_size`` defaults to ``crop_size`` scaled by the preset's load/crop ratio in training and to ``crop_size`` at
    test time; ``use_instance`` of ``custom`` defaults to whether ``instance_dir`` is given.
    """
    base = preset_for(name)
    crop = options.crop_size or base.crop_size
    load = options.load_size
    if load is None:
        load = round(crop * base.load_size / base.crop_size) if options.is_train else crop
    use_instance = options.use_instance
    if use_instance is None:
        use_instance = options.instance_dir is not None if name == "custom" else base.use_instance
    return replace(
        base,
        label_nc=base.label_nc if options.label_nc is None else options.label_nc,
        contain_dontcare=base.contain_dontcare if options.contain_dontcare is None else options.contain_dontcare,
        use_instance=use_instance,
        aspect_ratio=options.aspect_ratio or base.aspect_ratio,
        crop_size=crop,
        load_size=load,
        preprocess=options.preprocess or base.preprocess,
    )


def _synthetic(options: DatasetOptions, preset: Preset) -> SyntheticScenes:
    if options.label_nc is not None and options.label_nc != SyntheticScenes.label_nc:
        raise ValueError(
            f"label_nc: the synthetic scenes have {SyntheticScenes.label_nc} classes, got {options.label_nc}"
        )
    count = options.num_images if options.num_images is not None else (1024 if options.split == "train" else 64)
    size = (max(1, round(preset.crop_size / preset.aspect_ratio)), preset.crop_size)
    return SyntheticScenes(count, size, seed=options.seed, split=options.split)


def _dataroot(options: DatasetOptions, name: str) -> str | Path:
    if options.dataroot is None:
        raise ValueError(f"{name} dataset: dataroot is required (--dataroot)")
    return options.dataroot


def _folder(samples: list[Sample], options: DatasetOptions, preset: Preset) -> SegmentationFolder:
    preprocess = Preprocess(
        preset.preprocess, preset.crop_size, preset.load_size, preset.aspect_ratio, train=options.is_train
    )
    return SegmentationFolder(
        samples,
        label_nc=preset.label_nc,
        contain_dontcare=preset.contain_dontcare,
        preprocess=preprocess,
        generator=options.generator,
    )


def _cityscapes(options: DatasetOptions, preset: Preset) -> SegmentationFolder:
    root = _dataroot(options, "cityscapes")
    return _folder(cityscapes_samples(root, options.split, use_instance=preset.use_instance), options, preset)


def _ade20k(options: DatasetOptions, preset: Preset) -> SegmentationFolder:
    root = _dataroot(options, "ade20k")
    if preset.use_instance:
        raise ValueError("ade20k dataset: the ADE20K layout has no instance maps; use_instance must be False")
    return _folder(ade20k_samples(root, options.split), options, preset)


def _coco(options: DatasetOptions, preset: Preset) -> SegmentationFolder:
    root = _dataroot(options, "coco")
    return _folder(coco_samples(root, options.split, use_instance=preset.use_instance), options, preset)


def _custom(options: DatasetOptions, preset: Preset) -> SegmentationFolder:
    if options.label_dir is None or options.image_dir is None:
        raise ValueError("custom dataset: label_dir and image_dir are required (--label-dir, --image-dir)")
    if options.label_nc is None:
        raise ValueError("custom dataset: label_nc is required (the number of label ids)")
    if options.use_instance and options.instance_dir is None:
        raise ValueError("custom dataset: use_instance=True needs instance_dir (--instance-dir)")
    instance_dir = options.instance_dir if preset.use_instance else None
    return _folder(custom_samples(options.label_dir, options.image_dir, instance_dir), options, preset)


BUILDERS: dict[str, Callable[[DatasetOptions, Preset], LabelledDataset]] = {
    "synthetic": _synthetic,
    "cityscapes": _cityscapes,
    "ade20k": _ade20k,
    "coco": _coco,
    "custom": _custom,
}
"""The builder of each dataset name: ``synthetic`` (the default data, no files), the original layouts of
``cityscapes``, ``ade20k`` and ``coco`` under ``dataroot``, and ``custom`` (``label_dir``, ``image_dir``)."""

DATASETS = tuple(BUILDERS)


def build_dataset(name: str, options: DatasetOptions | None = None, /, **fields: Any) -> LabelledDataset:
    """The dataset ``name`` (one of :data:`DATASETS`) with its preset's defaults; options given override them.

    Args:
        name: ``synthetic``, ``cityscapes``, ``ade20k``, ``coco`` or ``custom``, see :data:`BUILDERS`.
        options: where the files are and how items are made (default: all from the preset).
        fields: :class:`DatasetOptions` fields to set on top of ``options``, e.g. ``dataroot=...``, ``split="val"``.

    Returns:
        :class:`~spade_gan.data.synthetic.SyntheticScenes` or :class:`~spade_gan.data.folders.SegmentationFolder`
        (see :data:`LabelledDataset`).

    Example:
        >>> data = build_dataset("synthetic", split="val", crop_size=32, num_images=2)
        >>> len(data), tuple(data[0]["image"].shape), data.semantic_nc
        (2, (3, 32, 32), 8)
    """
    if name not in BUILDERS:
        raise ValueError(f"name: expected one of {DATASETS}, got {name!r}")
    options = replace(options or DatasetOptions(), **fields)
    return BUILDERS[name](options, resolve_preset(name, options))
