"""File lists of the original dataset layouts: Cityscapes, ADE20K, COCO-Stuff and a custom folder pair.

Each function returns the :class:`~spade_gan.data.pairing.Sample` list, sorted by key, and raises
:class:`~spade_gan.data.errors.DatasetLayoutError` naming the directory or file for a missing folder or an unpaired
file.
"""

from __future__ import annotations

from pathlib import Path

from .pairing import Sample, image_files, index_files, pair_files, relative_stem, require_dir

_ADE_SPLITS = {"train": "training", "val": "validation"}


def cityscapes_samples(root: str | Path, split: str = "train", *, use_instance: bool = True) -> list[Sample]:
    """``gtFine/<split>/<city>/<name>_gtFine_labelIds.png`` (+ ``_gtFine_instanceIds.png``, 16-bit) paired with
    ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png``; the key is ``<city>/<name>``."""
    root = Path(root)
    gt = require_dir(root / "gtFine" / split, "Cityscapes label maps (gtFine/<split>/<city>/*_gtFine_labelIds.png)")
    img = require_dir(root / "leftImg8bit" / split, "Cityscapes photos (leftImg8bit/<split>/<city>/*_leftImg8bit.png)")
    labels = index_files(gt.rglob("*_gtFine_labelIds.png"), relative_stem(gt, "_gtFine_labelIds"), "label")
    images = index_files(img.rglob("*_leftImg8bit.png"), relative_stem(img, "_leftImg8bit"), "image")
    instances = None
    if use_instance:
        instances = index_files(
            gt.rglob("*_gtFine_instanceIds.png"), relative_stem(gt, "_gtFine_instanceIds"), "instance"
        )
    naming = "Cityscapes pairs <city>/<name>_gtFine_labelIds.png with <city>/<name>_leftImg8bit.png"
    return pair_files(labels, images, instances, naming=f"{naming} under {root}")


def ade20k_samples(root: str | Path, split: str = "train") -> list[Sample]:
    """``ADEChallengeData2016/images/{training,validation}/<name>.jpg`` with ``annotations/.../<name>.png``.

    ``root`` may be the ``ADEChallengeData2016`` folder itself or its parent; ``split`` is ``train`` or ``val``.
    """
    if split not in _ADE_SPLITS:
        raise ValueError(f"split: expected one of {sorted(_ADE_SPLITS)} for ADE20K, got {split!r}")
    root = Path(root)
    if (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    folder = _ADE_SPLITS[split]
    ann = require_dir(root / "annotations" / folder, f"ADE20K label maps (annotations/{folder}/*.png)")
    img = require_dir(root / "images" / folder, f"ADE20K photos (images/{folder}/*.jpg)")
    labels = index_files(ann.glob("*.png"), relative_stem(ann), "label")
    images = index_files(image_files(img), relative_stem(img), "image")
    return pair_files(
        labels, images, naming=f"ADE20K pairs annotations/{folder}/<name>.png with images/{folder}/<name>.jpg"
    )


def coco_samples(root: str | Path, split: str = "train", *, use_instance: bool = True) -> list[Sample]:
    """COCO-Stuff as the original prepares it: ``<split>_label/<name>.png``, ``<split>_img/<name>.jpg`` and
    ``<split>_inst/<name>.png`` for ``split`` in ``train``, ``val``."""
    root = Path(root)
    lab = require_dir(root / f"{split}_label", f"COCO-Stuff label maps ({split}_label/*.png)")
    img = require_dir(root / f"{split}_img", f"COCO-Stuff photos ({split}_img/*.jpg)")
    labels = index_files(lab.glob("*.png"), relative_stem(lab), "label")
    images = index_files(image_files(img), relative_stem(img), "image")
    instances = None
    if use_instance:
        inst = require_dir(root / f"{split}_inst", f"COCO-Stuff instance maps ({split}_inst/*.png)")
        instances = index_files(inst.glob("*.png"), relative_stem(inst), "instance")
    naming = f"COCO-Stuff pairs {split}_label/<name>.png with {split}_img/<name>.jpg and {split}_inst/<name>.png"
    return pair_files(labels, images, instances, naming=naming)


def custom_samples(
    label_dir: str | Path, image_dir: str | Path, instance_dir: str | Path | None = None
) -> list[Sample]:
    """Any folder pair: files are paired by their path relative to each folder without the extension (so
    ``labels/a/x.png`` pairs with ``images/a/x.jpg``); subfolders are searched."""
    lab = require_dir(label_dir, "label maps (--label-dir)")
    img = require_dir(image_dir, "photos (--image-dir)")
    labels = index_files(image_files(lab), relative_stem(lab), "label")
    images = index_files(image_files(img), relative_stem(img), "image")
    instances = None
    if instance_dir is not None:
        inst = require_dir(instance_dir, "instance maps (--instance-dir)")
        instances = index_files(image_files(inst), relative_stem(inst), "instance")
    return pair_files(labels, images, instances, naming=f"files are paired by name without extension: {lab} <-> {img}")
