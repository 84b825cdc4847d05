"""FID / KID on inputs with known answers, Inception weight loading, segmenter scores and evaluate.py end to end.

FID and KID come from torch-fidelity (the ``eval`` extra); where it cannot be imported (no torchvision matching this
torch) those tests skip and say why. The Inception tests use a randomly initialised extractor saved to a local file,
so the real loading code runs without a download.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from spade_gan.scoring import fidelity
from spade_gan.scoring.alignment import confusion_matrix, scores
from spade_gan.scoring.segmenter import SegmenterError, SegmenterScorer, read_class_mapping


@pytest.fixture(scope="module")
def torch_fidelity():
    try:
        return fidelity.import_fidelity()
    except ImportError as exc:
        pytest.skip(f"torch-fidelity is not usable here: {exc}")


@pytest.fixture(scope="module")
def inception_file(torch_fidelity, tmp_path_factory) -> Path:
    """A randomly initialised FID Inception network, saved like the standard file (no download)."""
    from unittest import mock

    from torch_fidelity import feature_extractor_inceptionv3 as fe

    torch.manual_seed(0)
    with (
        mock.patch.object(fe, "load_state_dict_from_url", return_value={}),
        mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", return_value=None),
    ):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("weights") / fidelity.INCEPTION_FILE
    torch.save(net.state_dict(), path)
    return path


def _reference_fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """Float64 FID with the matrix square root from a symmetric eigendecomposition (an independent formulation)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    w, v = torch.linalg.eigh(cov_a)
    root_a = v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T
    inner = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * inner)


def _reference_kid(a: torch.Tensor, b: torch.Tensor) -> float:
    """Unbiased MMD^2 with the kernel (x.y / d + 1)^3 over the full sets, float64."""
    d = a.shape[1]
    k = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    m, n = len(a), len(b)
    kaa, kbb = k(a, a), k(b, b)
    return float(
        (kaa.sum() - kaa.trace()) / (m * (m - 1)) + (kbb.sum() - kbb.trace()) / (n * (n - 1)) - 2 * k(a, b).mean()
    )


def test_fid_of_a_set_with_itself_is_zero_and_matches_an_independent_formula(torch_fidelity):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 12, generator=g, dtype=torch.float64) @ torch.randn(12, 12, generator=g, dtype=torch.float64)
    b = torch.randn(250, 12, generator=g, dtype=torch.float64) * 1.5 + 0.3
    assert abs(fidelity.fid(a, a)) < 1e-8
    assert fidelity.fid(a, b) == pytest.approx(_reference_fid(a, b), rel=1e-8)
    assert fidelity.fid(a, b) == pytest.approx(fidelity.fid(b, a), rel=1e-10)
    assert fidelity.fid(a, b) > 1.0


def test_kid_is_symmetric_matches_the_unbiased_estimator_and_is_unbiased_on_equal_distributions(torch_fidelity):
    g = torch.Generator().manual_seed(1)
    a = torch.randn(200, 8, generator=g, dtype=torch.float64)
    shifted = torch.randn(200, 8, generator=g, dtype=torch.float64) + 0.5
    full = {"subsets": 1, "subset_size": 200}
    assert fidelity.kid(a, shifted, **full)[0] == pytest.approx(_reference_kid(a, shifted), rel=1e-9)
    assert fidelity.kid(a, shifted, **full)[0] == pytest.approx(fidelity.kid(shifted, a, **full)[0], rel=1e-12)
    # Equal distributions: the unbiased estimate averages to 0 (a biased one would be > 0), far below a real shift.
    same = [fidelity.kid(*(torch.randn(100, 8, generator=g, dtype=torch.float64) for _ in range(2)), **full)[0]]
    same += [
        fidelity.kid(*(torch.randn(100, 8, generator=g, dtype=torch.float64) for _ in range(2)), **full)[0]
        for _ in range(39)
    ]
    mean = sum(same) / len(same)
    spread = (sum((s - mean) ** 2 for s in same) / (len(same) - 1)) ** 0.5
    assert abs(mean) < 3 * spread / len(same) ** 0.5
    assert min(same) < 0 < max(same)
    assert abs(mean) < 0.05 * fidelity.kid(a, shifted, **full)[0]


def test_fid_and_kid_reject_bad_feature_sets(torch_fidelity):
    with pytest.raises(ValueError, match="features_1 must be"):
        fidelity.fid(torch.zeros(1, 4), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="feature sizes differ"):
        fidelity.kid(torch.zeros(5, 4), torch.zeros(5, 3))


def test_inception_weights_load_from_a_local_file_and_give_2048_features(inception_file):
    extractor = fidelity.load_inception(inception_file)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    features = fidelity.inception_features(extractor, images, batch_size=2)
    assert features.shape == (3, fidelity.FEATURE_DIM)
    assert features.dtype == torch.float64
    assert torch.isfinite(features).all()
    again = fidelity.inception_features(extractor, images)
    torch.testing.assert_close(features, again)  # deterministic, batch-size independent


def test_inception_weight_errors_name_the_flag_and_the_standard_file(torch_fidelity, tmp_path):
    with pytest.raises(fidelity.WeightsError, match=r"--inception-weights .*no such file.*pt_inception-2015-12-05"):
        fidelity.load_inception(tmp_path / "missing.pth")
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    with pytest.raises(fidelity.WeightsError, match=r"--inception-weights .*not a state dict"):
        fidelity.load_inception(text)
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), other)
    with pytest.raises(fidelity.WeightsError, match="not the FID Inception network's weights"):
        fidelity.load_inception(other)


def _scripted_segmenter(path: Path, num_outputs: int, table: torch.Tensor | None = None) -> Path:
    """A 'segmenter' saved with torch.export (dynamic batch and size): a 1x1 conv, from ``table`` (K, 3) if given."""
    conv = torch.nn.Conv2d(3, num_outputs, 1)
    if table is not None:
        with torch.no_grad():
            conv.weight.copy_(table[:, :, None, None])
            conv.bias.zero_()
    dims = {0: torch.export.Dim("n", min=1), 2: torch.export.Dim("h", min=2), 3: torch.export.Dim("w", min=2)}
    program = torch.export.export(conv, (torch.zeros(2, 3, 8, 8),), dynamic_shapes=(dims,))
    torch.export.save(program, str(path))
    return path


def test_segmenter_reads_torchscript_files_too(tmp_path):
    conv = torch.nn.Conv2d(3, 4, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(conv).save(str(tmp_path / "seg.ts"))
    scorer = SegmenterScorer(tmp_path / "seg.ts", 4)
    images = torch.rand(2, 3, 4, 4) * 2 - 1
    with torch.no_grad():
        expected = conv(images.add(1).div(2)).argmax(1)
    assert torch.equal(scorer.predict(images, (4, 4)), expected)


def test_segmenter_scores_against_an_independent_confusion_matrix(tmp_path):
    # 3 outputs whose logits are the RGB channels: the prediction is the argmax channel of each pixel.
    seg = _scripted_segmenter(tmp_path / "rgb.pt", 3, torch.eye(3))
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[0, 0, :4] = 255  # don't care
    scorer = SegmenterScorer(seg, 3)
    scorer.update(images, labels)
    pred = images.argmax(1)
    keep = labels != 255
    expected = scores(confusion_matrix(pred[keep], labels[keep], 3))
    assert scorer.compute() == pytest.approx(expected)


def test_segmenter_class_mapping_and_unmapped_outputs(tmp_path):
    seg = _scripted_segmenter(tmp_path / "rgb.pt", 3, torch.eye(3))
    mapping_file = tmp_path / "map.json"
    mapping_file.write_text(json.dumps([1, 0, -1]))  # channel 2 is no dataset class
    scorer = SegmenterScorer(seg, 2, mapping=read_class_mapping(mapping_file, 2))
    images = -torch.ones(1, 3, 1, 3)
    images[0, 0, 0, 0] = images[0, 1, 0, 1] = images[0, 2, 0, 2] = 1.0  # pixels predicted as channel 0, 1, 2
    scorer.update(images, torch.tensor([[[1, 1, 0]]]))
    # pixel 0: id 1, right; pixel 1: id 0, wrong (true 1); pixel 2: unmapped, wrong (true 0)
    result = scorer.compute()
    assert result["accuracy"] == pytest.approx(1 / 3)
    assert result["miou"] == pytest.approx((0 / 2 + 1 / 2) / 2)  # class 0: 0 of union 2; class 1: 1 of union 2


def test_segmenter_errors_name_the_flag(tmp_path):
    with pytest.raises(SegmenterError, match=r"--segmenter .*no such file"):
        SegmenterScorer(tmp_path / "none.pt", 8)
    junk = tmp_path / "junk.pt"
    junk.write_text("junk")
    with pytest.raises(SegmenterError, match=r"neither a torch\.export program nor a TorchScript file"):
        SegmenterScorer(junk, 8)
    five = SegmenterScorer(_scripted_segmenter(tmp_path / "five.pt", 5), 8)
    with pytest.raises(
        SegmenterError, match=r"predicts K=5 classes but the dataset has label_nc=8.*--segmenter-classes"
    ):
        five.update(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    bad = tmp_path / "bad.json"
    bad.write_text("[0, 9]")
    with pytest.raises(SegmenterError, match=r"--segmenter-classes .*\[-1, 8\).*\[9\]"):
        read_class_mapping(bad, 8)
    bad.write_text('{"a": 1}')
    with pytest.raises(SegmenterError, match="expected a non-empty JSON list of ints"):
        read_class_mapping(bad, 8)


# evaluate.py end to end


def _evaluate(*args: object) -> int:
    import evaluate

    return evaluate.main([str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    import train_spade

    out = tmp_path_factory.mktemp("tiny")
    args = ["--crop-size", "32", "--ngf", "2", "--ndf", "4", "--batch-size", "2", "--num-images", "4"]
    assert train_spade.main([*args, "--max-steps", "1", "--eval-images", "0", "--out", str(out)]) == 0
    return out / "checkpoints" / "latest.pt"


def test_evaluate_reports_alignment_and_segmenter_scores_and_saves_the_images(tiny_checkpoint, tmp_path, capsys):
    seg = _scripted_segmenter(tmp_path / "seg.pt", 8)
    out = tmp_path / "eval"
    rc = _evaluate(
        "--checkpoint",
        tiny_checkpoint,
        "--out",
        out,
        "--num-images",
        5,
        "--batch-size",
        2,
        "--segmenter",
        seg,
        "--segmenter-size",
        16,
        16,
        "--no-progress",
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "5 images at 32x32" in printed
    assert "alignment" in printed
    assert "segmenter" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["num_images"] == 5
    assert results["size"] == [32, 32]
    assert results["dataset"] == "synthetic"
    assert set(results["alignment"]) == {"accuracy", "miou"}
    assert set(results["segmenter"]) == {"accuracy", "miou"}
    assert results["protocol"]["segmenter"]["size"] == [16, 16]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:05d}.png" for i in range(5)]
    assert not (out / ".images.partial").exists()


def test_evaluate_computes_fid_and_kid_with_local_inception_weights(tiny_checkpoint, inception_file, tmp_path):
    out = tmp_path / "eval"
    rc = _evaluate(
        "--checkpoint", tiny_checkpoint, "--out", out, "--num-images", 4, "--kid-subsets", 5,
        "--inception-weights", inception_file, "--no-progress",
    )  # fmt: skip
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["fid_kid"]["kid"].startswith("5 subsets of 4")
    # the same numbers from the saved PNGs and the real images of the same maps, recomputed here
    from PIL import Image
    from spade_gan.data import build_dataset

    extractor = fidelity.load_inception(inception_file)
    saved = sorted((out / "images").iterdir())
    fake = torch.stack([torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1) for p in saved])
    fake = (fake.float() + 0.5) / 127.5 - 1  # to_uint8 of this gives the PNG bytes back
    real = torch.stack(
        [build_dataset("synthetic", split="val", crop_size=32, num_images=4)[i]["image"] for i in range(4)]
    )
    f_fake, f_real = (fidelity.inception_features(extractor, x) for x in (fake, real))
    assert results["fid"] == pytest.approx(fidelity.fid(f_fake, f_real), rel=1e-6, abs=1e-9)
    assert results["kid_mean"] == pytest.approx(fidelity.kid(f_fake, f_real, subsets=5)[0], rel=1e-6, abs=1e-12)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--inception-weights", "missing.pth"], "--inception-weights .*missing.pth: no such file"),
        (["--segmenter", "missing.pt"], "--segmenter .*missing.pt: no such file"),
        (["--segmenter-size", "8", "8"], "--segmenter-size need --segmenter"),
        (["--num-images", "0"], "--num-images must be >= 1, got 0"),
        (["--dataset", "custom"], "--dataset custom needs --label-dir and --image-dir"),
        (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "nodevice"], "--device"),
    ],
)
def test_evaluate_bad_input_names_the_flag_and_leaves_no_result(tiny_checkpoint, tmp_path, capsys, extra, message):
    out = tmp_path / "eval"
    extra = [str(tmp_path / e) if e.startswith("missing") else e for e in extra]
    assert _evaluate("--checkpoint", tiny_checkpoint, "--out", out, "--no-progress", *extra) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (out / "results.json").exists()
    assert not (out / "images").exists()


def test_evaluate_fid_needs_two_images(tiny_checkpoint, inception_file, tmp_path, capsys):
    args = [
        "--checkpoint",
        tiny_checkpoint,
        "--out",
        tmp_path,
        "--num-images",
        1,
        "--inception-weights",
        inception_file,
    ]
    assert _evaluate(*args, "--no-progress") == 2
    assert "FID/KID need at least 2 images, --dataset synthetic gives 1" in capsys.readouterr().err


def test_a_segmenter_that_fails_on_the_images_is_a_clear_error(tmp_path):
    conv = torch.nn.Conv2d(3, 4, 1)
    static = torch.export.export(conv, (torch.zeros(2, 3, 8, 8),))  # no dynamic shapes: batch 2 at 8x8 only
    torch.export.save(static, str(tmp_path / "static.pt2"))
    scorer = SegmenterScorer(tmp_path / "static.pt2", 4)
    with pytest.raises(SegmenterError, match=r"static\.pt2 failed on a batch of shape \(3, 3, 8, 8\)"):
        scorer.update(torch.zeros(3, 3, 8, 8), torch.zeros(3, 8, 8, dtype=torch.long))


def test_evaluate_segmenter_class_count_mismatch_and_unpaired_data(tiny_checkpoint, tmp_path, capsys):
    seg = _scripted_segmenter(tmp_path / "five.pt", 5)
    assert _evaluate("--checkpoint", tiny_checkpoint, "--out", tmp_path / "a", "--segmenter", seg, "--no-progress") == 2
    assert "predicts K=5 classes but the dataset has label_nc=8" in capsys.readouterr().err
    assert not (tmp_path / "a" / "results.json").exists()
    assert not (tmp_path / "a" / "images").exists()
    labels, images = tmp_path / "labels", tmp_path / "images"
    labels.mkdir()
    images.mkdir()
    from PIL import Image

    Image.fromarray(torch.zeros(8, 8, dtype=torch.uint8).numpy()).save(labels / "a.png")
    rc = _evaluate(
        "--checkpoint",
        tiny_checkpoint,
        "--out",
        tmp_path / "b",
        "--dataset",
        "custom",
        "--label-dir",
        labels,
        "--image-dir",
        images,
        "--segmenter",
        seg,
        "--no-progress",
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "--dataset custom" in err
    assert "a.png" in err


def test_evaluate_refuses_a_checkpoint_whose_weights_are_another_architecture(tiny_checkpoint, tmp_path, capsys):
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["config"]["generator"] = "pix2pixhd"  # SPADE weights under a pix2pixHD configuration
    wrong = tmp_path / "wrong.pt"
    torch.save(state, wrong)
    assert _evaluate("--checkpoint", wrong, "--out", tmp_path / "eval", "--no-progress") == 2
    err = capsys.readouterr().err
    assert f"--checkpoint {wrong}" in err
    assert "does not fit this Pix2PixHDGenerator" in err
    assert "keys missing" in err
