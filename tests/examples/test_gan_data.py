"""Data pipeline of the reference GAN: label semantics, original layouts (tiny fixtures), transforms, synthetic data."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from spade_gan.data import (
    DATASETS,
    NUM_CLASSES,
    PRESETS,
    DatasetLayoutError,
    DatasetOptions,
    LabelRangeError,
    Preprocess,
    SegmentationFolder,
    SyntheticScenes,
    build_dataset,
    colorize_labels,
    custom_samples,
    get_preset,
    instance_edges,
    to_semantics,
)
from spade_gan.data.build import BUILDERS
from spade_gan.data.order import KeyedDataset, StepBatchSampler, steps_per_epoch
from torch.utils.data import DataLoader

H, W = 16, 32


# ---------------------------------------------------------------- fixture writers


def _label(seed: int, high: int) -> np.ndarray:
    """A 16x32 map of a few rectangles of ids below ``high``."""
    rng = np.random.default_rng(seed)
    label = np.zeros((H, W), np.uint8)
    for _ in range(4):
        top, left = rng.integers(0, H - 4), rng.integers(0, W - 8)
        label[top : top + 6, left : left + 10] = rng.integers(0, high)
    return label


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == np.uint16:
        Image.fromarray(array).save(path)  # 16-bit greyscale PNG
    else:
        Image.fromarray(array).save(path, quality=95)
    return path


def _photo(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _instances(label: np.ndarray) -> np.ndarray:
    """Cityscapes-style 16-bit ids: class * 1000 + instance, with two instances split at the middle column."""
    inst = label.astype(np.uint16) * 1000
    inst[:, W // 2 :] += 1
    return inst


def make_cityscapes(root: Path, split: str = "train") -> Path:
    for i, city in enumerate(["aachen", "bremen"]):
        for j in range(2):
            name = f"{city}_{j:06d}_000019"
            label = _label(10 * i + j, 35)
            _write(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", label)
            _write(root / "gtFine" / split / city / f"{name}_gtFine_instanceIds.png", _instances(label))
            _write(root / "gtFine" / split / city / f"{name}_gtFine_color.png", _photo(0))  # ignored
            _write(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", _photo(i + j))
    return root


def make_ade20k(root: Path) -> Path:
    base = root / "ADEChallengeData2016"
    for split, folder in [("train", "training"), ("val", "validation")]:
        for j in range(3):
            name = f"ADE_{split}_{j + 1:08d}"
            label = _label(j, 151)
            label[0, :4] = 255
            _write(base / "annotations" / folder / f"{name}.png", label)
            _write(base / "images" / folder / f"{name}.jpg", _photo(j))
    return root


def make_coco(root: Path) -> Path:
    for split in ("train", "val"):
        for j in range(2):
            name = f"0000000{j:05d}"
            label = _label(j, 182)
            label[-1, -3:] = 255
            _write(root / f"{split}_label" / f"{name}.png", label)
            _write(root / f"{split}_inst" / f"{name}.png", (label // 40).astype(np.uint8))
            _write(root / f"{split}_img" / f"{name}.jpg", _photo(j))
    return root


def make_custom(root: Path) -> tuple[Path, Path, Path]:
    for j, sub in enumerate(["", "a/", "a/b/"]):
        _write(root / "labels" / f"{sub}img{j}.png", _label(j, 5))
        _write(root / "images" / f"{sub}img{j}.jpg", _photo(j))
        _write(root / "instances" / f"{sub}img{j}.png", _label(j + 7, 3))
    return root / "labels", root / "images", root / "instances"


def _check_item(item: dict, size: tuple[int, int], num_ids: int, instance: bool) -> None:
    assert item["label"].dtype == torch.int64
    assert item["label"].shape == (1, *size)
    assert int(item["label"].min()) >= 0
    assert int(item["label"].max()) < num_ids
    assert item["image"].dtype == torch.float32
    assert item["image"].shape == (3, *size)
    assert float(item["image"].min()) >= -1.0
    assert float(item["image"].max()) <= 1.0
    assert isinstance(item["path"], str)
    assert ("instance" in item) == instance
    if instance:
        assert item["instance"].dtype == torch.float32
        assert item["instance"].shape == (1, *size)
        assert set(item["instance"].unique().tolist()) <= {0.0, 1.0}


# ---------------------------------------------------------------- semantics


def test_instance_edges_hand_made_example():
    inst = torch.tensor(
        [
            [1, 1, 1, 2],
            [1, 1, 1, 2],
            [3, 3, 1, 2],
            [3, 3, 3, 3],
        ]
    )
    expected = torch.tensor(
        [
            [0, 0, 1, 1],
            [1, 1, 1, 1],
            [1, 1, 1, 1],
            [0, 0, 1, 1],
        ],
        dtype=torch.float32,
    )
    torch.testing.assert_close(instance_edges(inst), expected)
    torch.testing.assert_close(instance_edges(inst[None, None]), expected[None, None])
    assert instance_edges(torch.full((3, 5), 7)).sum() == 0  # one instance: no edges, image borders are no edges


def test_to_semantics_one_hot_dontcare_and_edges():
    label = torch.tensor([[[0, 1], [255, 2]]])  # (1, 2, 2), 255 is dontcare
    inst = torch.tensor([[[5, 5], [5, 6]]])
    sem = to_semantics(label, inst, label_nc=3, contain_dontcare=True)
    assert sem.shape == (1, 3 + 1 + 1, 2, 2)
    assert sem.dtype == torch.float32
    assert sem[0, :4].sum(0).eq(1).all()  # exactly one class channel per pixel
    assert sem[0, 3, 1, 0] == 1  # 255 -> channel label_nc
    assert sem[0, 0, 0, 0] == 1
    assert sem[0, 1, 0, 1] == 1
    assert sem[0, 2, 1, 1] == 1
    torch.testing.assert_close(sem[0, 4], torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    # an already-mapped map (label_nc instead of 255) and a precomputed float edge map give the same
    mapped = torch.tensor([[[[0, 1], [3, 2]]]])
    again = to_semantics(mapped, instance_edges(inst)[:, None], label_nc=3, contain_dontcare=True)
    torch.testing.assert_close(again, sem)
    assert to_semantics(label[:, None].clamp(max=2), label_nc=3, contain_dontcare=False).shape == (1, 3, 2, 2)


@pytest.mark.parametrize(
    ("ids", "dontcare"),
    [([0, 3], False), ([255], False), ([0, 4], True), ([-1], True)],
)
def test_to_semantics_out_of_range_raises(ids, dontcare):
    with pytest.raises(LabelRangeError, match="label_nc=3"):
        to_semantics(torch.tensor([[ids]]), label_nc=3, contain_dontcare=dontcare)


def test_to_semantics_rejects_float_labels_and_bad_instance_shape():
    with pytest.raises(TypeError, match="integer"):
        to_semantics(torch.zeros(1, 1, 2, 2), label_nc=3, contain_dontcare=False)
    with pytest.raises(ValueError, match="instance"):
        to_semantics(torch.zeros(1, 1, 2, 2, dtype=torch.long), torch.zeros(1, 1, 3, 2), label_nc=3, contain_dontcare=0)


def test_presets_match_the_original():
    assert {k: p.semantic_nc for k, p in PRESETS.items()} == {
        "cityscapes": 36,
        "ade20k": 151,
        "coco": 184,
        "synthetic": NUM_CLASSES,
    }
    assert get_preset("cityscapes").output_size == (256, 512)
    assert get_preset("cityscapes").num_upsampling_layers == "more"
    assert PRESETS["synthetic"].label_nc == SyntheticScenes.label_nc
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["coco"].label_nc = 3
    with pytest.raises(KeyError, match="cityscapes"):
        get_preset("kitti")


# ---------------------------------------------------------------- original layouts


def test_cityscapes_pairing_labels_and_16bit_instances(tmp_path):
    root = make_cityscapes(tmp_path)
    data = build_dataset("cityscapes", dataroot=root, split="train", train=False, crop_size=W)
    assert len(data) == 4
    assert data.semantic_nc == 36
    assert next(Path(s.label).name for s in data.samples) == "aachen_000000_000019_gtFine_labelIds.png"
    for i, sample in enumerate(data.samples):
        assert sample.image.name == sample.label.name.replace("gtFine_labelIds", "leftImg8bit")
        assert sample.instance.name == sample.label.name.replace("labelIds", "instanceIds")
        item = data[i]
        _check_item(item, (H, W), 35, instance=True)  # "fixed" at 32 with aspect 2: 16x32, unchanged
        raw_label = np.asarray(Image.open(sample.label))
        np.testing.assert_array_equal(item["label"][0].numpy(), raw_label)
        raw_inst = np.asarray(Image.open(sample.instance)).astype(np.int64)
        assert raw_inst.max() > 255  # really 16-bit ids
        torch.testing.assert_close(item["instance"][0], instance_edges(torch.from_numpy(raw_inst)))
        assert item["instance"][0][:, W // 2 - 1 : W // 2 + 1].eq(1).all()  # the split between the two instances
        expected = (np.asarray(Image.open(sample.image)).astype(np.float32) / 127.5 - 1).transpose(2, 0, 1)
        np.testing.assert_allclose(item["image"].numpy(), expected, atol=1e-6)


def test_cityscapes_unpaired_files_name_the_file(tmp_path):
    root = make_cityscapes(tmp_path)
    photo = root / "leftImg8bit/train/bremen/bremen_000001_000019_leftImg8bit.png"
    photo.unlink()
    with pytest.raises(DatasetLayoutError, match=r"bremen_000001_000019_gtFine_labelIds\.png"):
        build_dataset("cityscapes", dataroot=root)
    _write(photo, _photo(0))
    stray = _write(root / "leftImg8bit/train/bremen/bremen_000009_000019_leftImg8bit.png", _photo(0))
    with pytest.raises(DatasetLayoutError, match=stray.name):
        build_dataset("cityscapes", dataroot=root)
    stray.unlink()
    (root / "gtFine/train/aachen/aachen_000001_000019_gtFine_instanceIds.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"aachen_000001_000019_gtFine_labelIds\.png.*instance"):
        build_dataset("cityscapes", dataroot=root)
    assert len(build_dataset("cityscapes", dataroot=root, use_instance=False)) == 4
    with pytest.raises(DatasetLayoutError, match="gtFine/val"):
        build_dataset("cityscapes", dataroot=root, split="val")


def test_cityscapes_out_of_range_id_names_the_file(tmp_path):
    root = make_cityscapes(tmp_path)
    bad = root / "gtFine/train/aachen/aachen_000001_000019_gtFine_labelIds.png"
    label = _label(1, 35)
    label[3, 3] = 35
    label[4, 4] = 255  # Cityscapes has no dontcare: also out of range
    _write(bad, label)
    data = build_dataset("cityscapes", dataroot=root, crop_size=W)
    data[0]
    with pytest.raises(LabelRangeError, match=r"aachen_000001_000019_gtFine_labelIds\.png.*35, 255"):
        data[1]


def test_ade20k_dontcare_and_unshifted_ids(tmp_path):
    root = make_ade20k(tmp_path)
    for where in (root, root / "ADEChallengeData2016"):  # the root or the dataset folder itself
        data = build_dataset("ade20k", dataroot=where, split="val")
        assert len(data) == 3
        assert data.semantic_nc == 151
        assert not data.use_instance
    data = build_dataset("ade20k", dataroot=root, split="val", crop_size=W)  # test time: resize to 32x32, no crop
    item = data[0]
    _check_item(item, (W, W), 151, instance=False)
    raw = np.asarray(Image.open(data.samples[0].label))
    assert item["label"][0, 0, 0] == 150  # 255 (dontcare) -> label_nc
    assert set(item["label"].unique().tolist()) == ({*np.unique(raw).tolist()} - {255}) | {150}
    sem = to_semantics(item["label"], label_nc=150, contain_dontcare=True)
    assert sem.shape == (1, 151, W, W)
    assert sem.sum(1).eq(1).all()
    # id 150 (the last ADE class, left unshifted) shares the dontcare channel as in the original; 151 is out of range
    label = _label(0, 150)
    label[5, 5] = 150
    _write(root / "ADEChallengeData2016/annotations/validation/ADE_val_00000002.png", label)
    assert data[1]["label"].max() == 150
    label[5, 5] = 151
    _write(root / "ADEChallengeData2016/annotations/validation/ADE_val_00000002.png", label)
    with pytest.raises(LabelRangeError, match=r"ADE_val_00000002\.png.*151"):
        data[1]
    (root / "ADEChallengeData2016/images/training/ADE_train_00000003.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match=r"ADE_train_00000003\.png"):
        build_dataset("ade20k", dataroot=root)


def test_coco_stuff_layout(tmp_path):
    root = make_coco(tmp_path)
    torch.manual_seed(0)
    data = build_dataset("coco", dataroot=root, split="train", crop_size=24)  # resize 27x27 (286/256), crop 24
    assert len(data) == 2
    assert data.semantic_nc == 184
    item = data[1]
    _check_item(item, (24, 24), 183, instance=True)
    assert int(item["label"].max()) <= 182
    sem = to_semantics(item["label"], item["instance"], label_nc=182, contain_dontcare=True)
    assert sem.shape == (1, 184, 24, 24)
    test_item = build_dataset("coco", dataroot=root, split="val", crop_size=W)[0]
    assert test_item["label"][0, -1, -1] == 182  # 255 -> label_nc, at test time nothing is cropped away
    (root / "val_inst/000000000001.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"val_label/000000000001\.png.*instance"):
        build_dataset("coco", dataroot=root, split="val")


def test_custom_folders_pair_by_relative_stem(tmp_path):
    labels, images, instances = make_custom(tmp_path)
    samples = custom_samples(labels, images, instances)
    assert [s.label.relative_to(labels).as_posix() for s in samples] == ["a/b/img2.png", "a/img1.png", "img0.png"]
    assert all(s.image.stem == s.label.stem and s.instance.stem == s.label.stem for s in samples)
    data = build_dataset("custom", label_dir=labels, image_dir=images, instance_dir=instances, label_nc=5, crop_size=8)
    assert data.semantic_nc == 6
    _check_item(data[0], (8, 8), 5, instance=True)
    with pytest.raises(LabelRangeError, match=r"img0\.png"):
        build_dataset("custom", label_dir=labels, image_dir=images, label_nc=2)[2]
    with pytest.raises(ValueError, match="label_nc"):
        build_dataset("custom", label_dir=labels, image_dir=images)
    _write(images / "a" / "img1.png", _photo(3))
    with pytest.raises(DatasetLayoutError, match="share the key 'a/img1'"):
        custom_samples(labels, images)
    (images / "a" / "img1.png").unlink()
    (images / "img0.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match=r"labels/img0\.png"):
        custom_samples(labels, images)
    with pytest.raises(DatasetLayoutError, match="nowhere"):
        custom_samples(tmp_path / "nowhere", images)


def test_rgb_label_file_is_rejected_with_its_name(tmp_path):
    labels, images, _ = make_custom(tmp_path)
    _write(labels / "img0.png", _photo(0))
    with pytest.raises(ValueError, match=r"img0\.png: a label map must have one channel"):
        build_dataset("custom", label_dir=labels, image_dir=images, label_nc=5)[2]


# ---------------------------------------------------------------- transforms


def test_training_crop_and_flip_move_label_and_image_together(tmp_path):
    label = np.zeros((H, W), np.uint8)
    label[:, W // 2 :] = 1
    photo = np.zeros((H, W, 3), np.uint8)
    photo[:, : W // 2, 0] = 255  # red where the label is 0
    photo[:, W // 2 :, 2] = 255  # blue where it is 1
    _write(tmp_path / "l" / "x.png", label)
    _write(tmp_path / "i" / "x.png", photo)
    samples = custom_samples(tmp_path / "l", tmp_path / "i")
    spec = Preprocess("resize_and_crop", crop_size=20, load_size=24, train=True)
    data = SegmentationFolder(samples, label_nc=2, contain_dontcare=False, preprocess=spec, generator=None)
    flips = set()
    torch.manual_seed(0)
    for _ in range(16):
        item = data[0]
        lab, img = item["label"][0], item["image"]
        assert lab.shape == (20, 20)
        edge_cols = [0, 19]
        for col in edge_cols:  # away from the class boundary the colour follows the label
            blue = bool(img[2, :, col].mean() > 0.5)
            assert blue == bool(lab[:, col].float().mean() > 0.5)
        flips.add(int(lab[0, 0]))
    assert flips == {0, 1}  # both orientations occur
    # the same generator seed draws the same crops and flips
    a = [SegmentationFolder(samples, label_nc=2, contain_dontcare=False, preprocess=spec,
                            generator=torch.Generator().manual_seed(3))[0]["image"] for _ in range(2)]  # fmt: skip
    b = [SegmentationFolder(samples, label_nc=2, contain_dontcare=False, preprocess=spec,
                            generator=torch.Generator().manual_seed(3))[0]["image"] for _ in range(2)]  # fmt: skip
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        (Preprocess("fixed", crop_size=64, aspect_ratio=2.0), (32, 64)),
        (Preprocess("resize_and_crop", crop_size=12, load_size=14), (12, 12)),
        (Preprocess("scale_shortside_and_crop", crop_size=20, load_size=24), (20, 20)),
        (Preprocess("none", crop_size=8), (H, W)),
    ],
)
def test_preprocess_modes_give_the_documented_size(tmp_path, spec, size):
    labels, images, _ = make_custom(tmp_path)
    data = SegmentationFolder(custom_samples(labels, images), label_nc=5, contain_dontcare=False, preprocess=spec)
    item = data[0]
    _check_item(item, size, 5, instance=False)
    assert set(item["label"].unique().tolist()) <= set(np.unique(_label(2, 5)).tolist())  # nearest: no new ids


def test_preprocess_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        Preprocess("stretch")
    with pytest.raises(ValueError, match="load_size"):
        Preprocess(crop_size=256, load_size=128)


def test_folder_items_collate(tmp_path):
    root = make_cityscapes(tmp_path)
    batch = next(iter(DataLoader(build_dataset("cityscapes", dataroot=root, crop_size=W), batch_size=3)))
    assert batch["label"].shape == (3, 1, H, W)
    assert batch["instance"].shape == (3, 1, H, W)
    assert len(batch["path"]) == 3
    assert to_semantics(batch["label"], batch["instance"], label_nc=35, contain_dontcare=False).shape == (3, 36, H, W)


# ---------------------------------------------------------------- synthetic scenes


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (128, 128)])
def test_synthetic_items_shapes_ranges_dtypes(size):
    data = SyntheticScenes(6, size, seed=1)
    for i in range(len(data)):
        _check_item(data[i], size, NUM_CLASSES, instance=False)
    assert data.semantic_nc == NUM_CLASSES


def test_synthetic_is_deterministic_and_seed_dependent():
    a, b = SyntheticScenes(4, 64, seed=5), SyntheticScenes(4, 64, seed=5)
    for i in range(4):
        torch.testing.assert_close(a[i]["label"], b[i]["label"], rtol=0, atol=0)
        torch.testing.assert_close(a[i]["image"], b[i]["image"], rtol=0, atol=0)
    torch.testing.assert_close(a[2]["image"], a[2]["image"], rtol=0, atol=0)  # same call twice
    c = SyntheticScenes(4, 64, seed=6)
    for i in range(4):
        assert not torch.equal(a[i]["image"], c[i]["image"])
    assert not torch.equal(a[0]["label"], a[1]["label"])
    assert torch.equal(a[-1]["image"], a[3]["image"])
    with pytest.raises(IndexError):
        a[4]


def test_synthetic_train_and_val_are_disjoint():
    train = SyntheticScenes(32, 32, seed=0, split="train")
    val = SyntheticScenes(32, 32, seed=0, split="val")
    train_images = [train[i]["image"] for i in range(32)]
    for i in range(32):
        v = val[i]["image"]
        assert not any(torch.equal(v, t) for t in train_images)
    assert {train[i]["path"] for i in range(32)}.isdisjoint(val[i]["path"] for i in range(32))


def test_synthetic_scene_is_resolution_free_and_diverse():
    small, large = SyntheticScenes(8, 64, seed=2), SyntheticScenes(8, 128, seed=2)
    counts = torch.zeros(NUM_CLASSES)
    for i in range(8):
        a, b = small[i]["label"][0], large[i]["label"][0]
        assert (b[::2, ::2] == a).float().mean() > 0.9  # the same layout at both resolutions
        counts += torch.bincount(a.flatten(), minlength=NUM_CLASSES)
    assert (counts > 0).all()  # every class occurs in a few scenes


def test_synthetic_generation_is_fast():
    data = SyntheticScenes(20, 128)
    data[0]
    start = time.perf_counter()
    for i in range(20):
        data[i]
    assert (time.perf_counter() - start) / 20 < 0.03  # about 3 ms on one core; generous for busy CI machines


def test_synthetic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        SyntheticScenes(4, split="test")
    with pytest.raises(ValueError, match="size"):
        SyntheticScenes(4, size=(0, 4))
    with pytest.raises(ValueError, match="label_nc"):
        build_dataset("synthetic", label_nc=3)
    with pytest.raises(ValueError, match="name"):
        build_dataset("kitti")


def test_build_synthetic_and_colorize():
    data = build_dataset("synthetic", split="val", crop_size=32, num_images=3, seed=4)
    assert isinstance(data, SyntheticScenes)
    assert len(data) == 3
    assert data.size == (32, 32)
    batch = next(iter(DataLoader(data, batch_size=3)))
    assert "instance" not in batch
    rgb = colorize_labels(batch["label"], NUM_CLASSES)
    assert rgb.shape == (3, 3, 32, 32)
    assert rgb.min() >= -1
    assert rgb.max() <= 1
    assert colorize_labels(torch.tensor([[[0, 40]]]), 151).shape == (1, 3, 1, 2)


def test_build_dataset_dispatches_through_its_table_and_merges_options():
    assert tuple(BUILDERS) == DATASETS == ("synthetic", "cityscapes", "ade20k", "coco", "custom")
    base = DatasetOptions(split="val", crop_size=32, num_images=2)
    data = build_dataset("synthetic", base, seed=4, aspect_ratio=2.0)
    assert (len(data), data.size, data.seed, data.split) == (2, (16, 32), 4, "val")
    with pytest.raises(TypeError, match="crops"):
        build_dataset("synthetic", crops=32)
    with pytest.raises(ValueError, match="dataroot is required"):
        build_dataset("coco")
    assert DatasetOptions().is_train
    assert not DatasetOptions(split="val").is_train
    assert not DatasetOptions(train=False).is_train


# ---------------------------------------------------------------- data order


def test_step_batches_depend_on_seed_step_and_rank_only():
    def batches(**kwargs):
        return list(StepBatchSampler(10, 2, **{"seed": 3, "start_step": 0, "total_steps": 12, **kwargs}))

    full = batches()
    assert len(full) == 12
    assert batches(start_step=7) == full[7:]  # a resumed run replays the same batches
    assert batches(seed=4) != full
    for epoch in (0, 1):  # each epoch visits every item once (10 items, 5 steps of 2)
        keys = [k for batch in full[5 * epoch : 5 * epoch + 5] for k in batch]
        assert sorted(i for _, i in keys) == list(range(10))
        assert {e for e, _ in keys} == {epoch}
    ranks = [batches(rank=r, world_size=2, total_steps=2) for r in (0, 1)]
    for step in range(2):  # the ranks split each global batch of 4
        assert not set(ranks[0][step]) & set(ranks[1][step])
    assert steps_per_epoch(10, 2, world_size=2) == 2
    with pytest.raises(ValueError, match="fewer than one global batch"):
        steps_per_epoch(3, 2, world_size=2)


def test_keyed_dataset_seeds_augmentation_from_the_key():
    class Recorder:
        generator = None

        def __len__(self):
            return 3

        def __getitem__(self, index):
            return {"index": index, "draw": float(torch.rand((), generator=self.generator))}

    keyed = KeyedDataset(Recorder(), seed=1)
    assert len(keyed) == 3
    assert keyed[(0, 2)] == keyed[(0, 2)]
    assert keyed[(0, 2)]["draw"] != keyed[(1, 2)]["draw"]
