"""Alignment metric of the synthetic scenes: real images score high, noise and constant images near chance."""

from __future__ import annotations

import pytest
import torch
from spade_gan.data import NUM_CLASSES, SCENE_CLASSES, SyntheticScenes
from spade_gan.scoring.alignment import (
    AlignmentMeter,
    alignment_features,
    confusion_matrix,
    default_class_model,
    evaluate_alignment,
    predict_classes,
    scores,
)


def _batch(n: int, size: int, seed: int = 0, split: str = "val") -> tuple[torch.Tensor, torch.Tensor]:
    data = SyntheticScenes(n, size, seed=seed, split=split)
    items = [data[i] for i in range(n)]
    return torch.stack([it["image"] for it in items]), torch.stack([it["label"][0] for it in items])


@pytest.fixture(scope="module", params=[64, 128])
def results(request) -> dict[str, dict[str, float]]:
    """Scores of 32 validation scenes at one size: real, noise, constant grey, mismatched labels, flat colours."""
    images, labels = _batch(32, request.param)
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    flat = torch.tensor([c.colour for c in SCENE_CLASSES])[labels].permute(0, 3, 1, 2) * 2 - 1  # colour, no texture
    fakes = {
        "real": images,
        "noise": noise,
        "grey": torch.zeros_like(images),
        "shuffled": images.roll(1, dims=0),  # real scenes, but drawn for other label maps
        "flat": flat,
    }
    out = {name: evaluate_alignment(fake, labels) for name, fake in fakes.items()}
    out["chance"] = {"accuracy": _majority(labels)}  # the most frequent class everywhere
    return out


def _majority(labels: torch.Tensor) -> float:
    return float(torch.bincount(labels.flatten(), minlength=NUM_CLASSES).max() / labels.numel())


def test_real_images_score_high(results):
    assert set(results["real"]) == {"accuracy", "miou"}
    assert results["real"]["accuracy"] >= 0.9
    assert results["real"]["miou"] >= 0.8


@pytest.mark.parametrize("fake", ["noise", "grey"])
def test_noise_and_constant_images_score_near_chance(results, fake):
    assert results[fake]["accuracy"] <= results["chance"]["accuracy"] + 0.05
    assert results[fake]["miou"] <= 0.1


def test_mismatched_labels_and_flat_colours_score_lower(results):
    assert results["shuffled"]["accuracy"] < 0.6
    assert results["shuffled"]["miou"] < 0.3
    assert results["shuffled"]["accuracy"] < results["flat"]["accuracy"] < results["real"]["accuracy"]


def test_constant_images_of_any_level_score_near_chance():
    images, labels = _batch(8, 32, seed=1)
    chance = _majority(labels)
    for level in (-1.0, -0.5, 0.5, 1.0):
        assert evaluate_alignment(torch.full_like(images, level), labels)["accuracy"] <= chance + 0.05


def test_meter_accumulates_like_one_batch():
    images, labels = _batch(6, 32, seed=3)
    meter = AlignmentMeter()
    meter.update(images[:4], labels[:4, None])  # (N, 1, H, W) labels are accepted too
    meter.update(images[4:], labels[4:])
    assert meter.compute() == pytest.approx(evaluate_alignment(images, labels))


def test_predictions_and_dtypes():
    images, labels = _batch(2, 32, seed=4)
    pred = predict_classes(images)
    assert pred.shape == labels.shape
    assert pred.dtype == torch.int64
    assert int(pred.min()) >= 0
    assert int(pred.max()) < NUM_CLASSES
    assert torch.equal(predict_classes(images.double()), pred)
    assert alignment_features(images).shape == (2, 11, 32, 32)
    assert default_class_model() is default_class_model()  # fitted once


def test_scores_of_a_hand_made_confusion_matrix():
    pred = torch.tensor([[0, 0, 1, 1]])
    labels = torch.tensor([[0, 1, 1, 1]])
    cm = confusion_matrix(pred, labels, num_classes=3)
    assert cm.tolist() == [[1, 0, 0], [1, 2, 0], [0, 0, 0]]
    result = scores(cm)
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # class 2 never occurs: not averaged


def test_bad_inputs_raise():
    images, labels = _batch(1, 16)
    with pytest.raises(ValueError, match="images"):
        evaluate_alignment(images[:, :1], labels)
    with pytest.raises(ValueError, match="labels: expected shape"):
        evaluate_alignment(images, labels[:, :8])
    with pytest.raises(ValueError, match=r"ids must be in 0\.\.7"):
        evaluate_alignment(images, labels + NUM_CLASSES)
    with pytest.raises(TypeError, match="integer"):
        evaluate_alignment(images, labels.float())
