"""One entry point for the training and synthesis scripts: a dataset by name, with the original defaults."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .folders import SegmentationFolder
from .layouts import ade20k_samples, cityscapes_samples, coco_samples, custom_samples
from .presets import PRESETS, PreprocessMode, Preset
from .synthetic import SyntheticScenes
from .transforms import Preprocess

DATASETS = ("synthetic", "cityscapes", "ade20k", "coco", "custom")
CUSTOM_PRESET = Preset("custom", 1, False, False, 1.0, 256, 286, "resize_and_crop", "normal")
"""Defaults for ``custom`` (``label_nc`` must be given by the user)."""


def build_dataset(
    name: str,
    *,
    split: str = "train",
    train: bool | None = None,
    dataroot: str | Path | None = None,
    label_dir: str | Path | None = None,
    image_dir: str | Path | None = None,
    instance_dir: str | Path | None = None,
    label_nc: int | None = None,
    contain_dontcare: bool | None = None,
    use_instance: bool | None = None,
    crop_size: int | None = None,
    load_size: int | None = None,
    aspect_ratio: float | None = None,
    preprocess: PreprocessMode | None = None,
    num_images: int | None = None,
    seed: int = 0,
    generator: torch.Generator | None = None,
) -> Dataset:
    """The dataset ``name`` (one of :data:`DATASETS`) with its preset's defaults; arguments given override them.

    Args:
        name: ``synthetic`` (the default data, no files), ``cityscapes``, ``ade20k``, ``coco`` (``dataroot`` is the
            dataset's root folder) or ``custom`` (``label_dir``, ``image_dir``, optional ``instance_dir`` and
            ``label_nc`` are required).
        split: ``train`` or ``val`` (Cityscapes also ``test``).
        train: random crop and flip; defaults to ``split == "train"``. At test time ``load_size`` defaults to
            ``crop_size`` (no crop), as in the original.
        crop_size, load_size, aspect_ratio, preprocess: geometry, see :class:`~spade_gan.data.transforms.Preprocess`;
            a ``crop_size`` without ``load_size`` keeps the preset's load/crop ratio (286/256 for ADE20K and COCO).
            The synthetic scenes are rendered directly at ``(round(crop_size / aspect_ratio), crop_size)``.
        num_images, seed: synthetic data only (default 1024 images for ``train``, 64 for ``val``).
        generator: torch generator for the random crop and flip of the folder datasets.

    Returns:
        :class:`~spade_gan.data.synthetic.SyntheticScenes` or :class:`~spade_gan.data.folders.SegmentationFolder`;
        both have ``label_nc``, ``contain_dontcare``, ``use_instance`` and ``semantic_nc`` attributes.
    """
    if name not in DATASETS:
        raise ValueError(f"name: expected one of {DATASETS}, got {name!r}")
    preset = CUSTOM_PRESET if name == "custom" else PRESETS[name]
    preset = replace(
        preset,
        label_nc=preset.label_nc if label_nc is None else label_nc,
        contain_dontcare=preset.contain_dontcare if contain_dontcare is None else contain_dontcare,
        use_instance=(instance_dir is not None if name == "custom" else preset.use_instance)
        if use_instance is None
        else use_instance,
        aspect_ratio=aspect_ratio or preset.aspect_ratio,
        preprocess=preprocess or preset.preprocess,
    )
    train = split == "train" if train is None else train
    crop = crop_size or preset.crop_size
    if load_size is None:
        load_size = round(crop * preset.load_size / preset.crop_size) if train else crop

    if name == "synthetic":
        if label_nc is not None and label_nc != SyntheticScenes.label_nc:
            raise ValueError(f"label_nc: the synthetic scenes have {SyntheticScenes.label_nc} classes, got {label_nc}")
        count = num_images if num_images is not None else (1024 if split == "train" else 64)
        return SyntheticScenes(count, (max(1, round(crop / preset.aspect_ratio)), crop), seed=seed, split=split)

    if name == "custom":
        if label_dir is None or image_dir is None:
            raise ValueError("custom dataset: label_dir and image_dir are required (--label-dir, --image-dir)")
        if label_nc is None:
            raise ValueError("custom dataset: label_nc is required (the number of label ids)")
        if use_instance and instance_dir is None:
            raise ValueError("custom dataset: use_instance=True needs instance_dir (--instance-dir)")
        samples = custom_samples(label_dir, image_dir, instance_dir if preset.use_instance else None)
    else:
        if dataroot is None:
            raise ValueError(f"{name} dataset: dataroot is required (--dataroot)")
        if name == "cityscapes":
            samples = cityscapes_samples(dataroot, split, use_instance=preset.use_instance)
        elif name == "ade20k":
            samples = ade20k_samples(dataroot, split)
            if preset.use_instance:
                raise ValueError("ade20k dataset: the ADE20K layout has no instance maps; use_instance must be False")
        else:
            samples = coco_samples(dataroot, split, use_instance=preset.use_instance)
    spec = Preprocess(preset.preprocess, crop, load_size, preset.aspect_ratio, train=train)
    return SegmentationFolder(
        samples,
        label_nc=preset.label_nc,
        contain_dontcare=preset.contain_dontcare,
        preprocess=spec,
        generator=generator,
    )
