"""The 3-D example: procedural volumes, the SPADE volume decoder, the alignment score and the script end to end."""

from __future__ import annotations

import json

import pytest
import torch
import volume_demo
from volume3d.alignment import IntensityClassifier, alignment
from volume3d.data import NUM_CLASSES, ProceduralVolumes
from volume3d.model import VolumeDecoder

SIZE = (8, 16, 16)


def test_volumes_are_reproducible_and_splits_differ():
    train, val = ProceduralVolumes(3, SIZE, seed=1), ProceduralVolumes(3, SIZE, seed=1, split="val")
    labels, image = train[2]
    assert torch.equal(labels, train[2][0])
    assert torch.equal(image, train[2][1])
    assert not torch.equal(labels, val[2][0])
    assert labels.dtype == torch.long
    assert image.shape == (1, *SIZE)
    with pytest.raises(IndexError, match=r"index must be in \[0, 3\), got 3"):
        train[3]
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val'\), got 'test'"):
        ProceduralVolumes(1, SIZE, split="test")


def test_every_class_appears_and_real_volumes_score_near_the_top():
    labels, images = zip(*(ProceduralVolumes(8, (16, 32, 32))[i] for i in range(8)), strict=True)
    labels, images = torch.stack(labels), torch.stack(images)
    assert (torch.bincount(labels.flatten(), minlength=NUM_CLASSES) > 0).all()
    classifier = IntensityClassifier.fit(labels[:4], images[:4], NUM_CLASSES)
    scores = alignment(classifier.predict(images[4:]), labels[4:], NUM_CLASSES)
    assert scores["accuracy"] > 0.97
    assert scores["miou"] > 0.9
    chance = alignment(classifier.predict(torch.rand_like(images[4:]) * 2 - 1), labels[4:], NUM_CLASSES)
    assert chance["accuracy"] < 0.3


def test_decoder_shapes_and_its_spade_layers_are_3d():
    net = VolumeDecoder(NUM_CLASSES, width=8, num_up=2, hidden_channels=4)
    out = net(torch.randint(0, NUM_CLASSES, (2, *SIZE)))
    assert out.shape == (2, 1, *SIZE)
    assert out.abs().max() <= 1
    assert all(m.spatial_dims == 3 for m in net.modules() if m.__class__.__name__ == "SPADE")
    with pytest.raises(ValueError, match=r"divisible by 4, got \(8, 16, 10\)"):
        net(torch.zeros(1, 8, 16, 10, dtype=torch.long))


def test_script_end_to_end(tmp_path, capsys):
    volume_demo.main(["--steps", "2", "--size", "8", "16", "16", "--width", "8", "--val-volumes", "4",
                      "--out", str(tmp_path)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "trained 2 steps" in printed
    results = json.loads((tmp_path / "alignment.json").read_text())
    assert set(results) >= {"generated", "real", "chance (uniform noise)", "layout floor (real vs other labels)"}
    assert (tmp_path / "mid_slices.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        volume_demo.main(["--size", "8", "16", "15"])
