"""synthesize.py: train checkpoints and original generator state dicts, label reading, VAE style and seeds, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from spade_gan.data import to_semantics
from spade_gan.data.transforms import Geometry, apply_to_ids
from spade_gan.models.generator import SPADEGenerator
from spade_gan.synthesis.loading import SynthesisError, load_model
from spade_gan.training.checkpoints import load_checkpoint
from spade_gan.training.config import TrainConfig


def _synthesize(*args: object) -> int:
    import synthesize

    return synthesize.main([str(a) for a in args])


def _train(out: Path, *extra: str) -> Path:
    import train_spade

    args = ["--crop-size", "32", "--ngf", "2", "--ndf", "4", "--batch-size", "2", "--num-images", "4"]
    args += ["--max-steps", "1", "--eval-images", "0", "--out", str(out), *extra]
    assert train_spade.main(args) == 0
    return out / "checkpoints" / "latest.pt"


@pytest.fixture(scope="module")
def train_ckpt(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("plain"), "--ema-decay", "0.9")  # synthesis loads the average


@pytest.fixture(scope="module")
def vae_ckpt(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("vae"), "--use-vae", "--z-dim", "8")


def _write_labels(directory: Path, maps: dict[str, np.ndarray], dtype=np.uint8) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, ids in maps.items():
        Image.fromarray(ids.astype(dtype)).save(directory / name)
    return directory


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "RGB"
        return np.asarray(img)


def test_gan_synthesize_from_train_checkpoint(tmp_path, train_ckpt, capsys):
    rng = np.random.default_rng(0)
    labels = _write_labels(
        tmp_path / "labels", {"a.png": rng.integers(0, 8, (40, 50)), "b_scene.png": rng.integers(0, 8, (32, 32))}
    )
    out = tmp_path / "out"
    assert _synthesize("--checkpoint", train_ckpt, "--labels", labels, "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b_scene.png"]
    assert _read(out / "a.png").shape == (32, 32, 3)
    assert "wrote 2 images (32x32)" in capsys.readouterr().out


def test_gan_synthesize_original_state_dict_matches_generator(tmp_path):
    """An ADE20K-layout generator (151 channels, dontcare 255): outputs equal the eval-mode forward on the input the
    original test pipeline builds (nearest resize, 255 -> 150, one-hot), written as (y + 1) / 2 * 255."""
    torch.manual_seed(0)
    g = SPADEGenerator(151, ngf=2, crop_size=64)
    g.train()
    with torch.no_grad():  # a few training-mode passes give non-trivial running statistics
        for _ in range(2):
            g(torch.randint(0, 151, (2, 64, 64)))
    path = tmp_path / "latest_net_G.pth"
    torch.save(g.state_dict(), path)

    rng = np.random.default_rng(1)
    ids = rng.integers(0, 151, (48, 80))
    ids[:5] = 255
    labels = _write_labels(tmp_path / "labels", {"scene.png": ids})
    out = tmp_path / "out"
    assert _synthesize("--checkpoint", path, "--preset", "ade20k", "--crop-size", "64", "--labels", labels,
                       "--out", out) == 0  # fmt: skip
    image = _read(out / "scene.png")
    assert image.shape == (64, 64, 3)

    resized = torch.from_numpy(apply_to_ids(ids, Geometry((64, 64), (0, 0, 64, 64), False)).copy())
    seg = to_semantics(resized[None, None], label_nc=150, contain_dontcare=True)
    g.eval()
    with torch.no_grad():
        y = g(seg)
    expected = ((y[0] + 1) / 2 * 255).clamp(0, 255).permute(1, 2, 0).numpy().astype(np.uint8)
    np.testing.assert_array_equal(image, expected)


def test_gan_synthesize_original_cityscapes_with_instances(tmp_path):
    torch.manual_seed(0)
    g = SPADEGenerator(36, ngf=2, crop_size=128, aspect_ratio=2.0, num_upsampling_layers="more")
    path = tmp_path / "latest_net_G.pth"
    torch.save(g.state_dict(), path)
    rng = np.random.default_rng(2)
    name = "aachen_000000_000019_gtFine_labelIds.png"
    labels = _write_labels(tmp_path / "gtFine", {name: rng.integers(0, 35, (64, 128))})
    instance_ids = rng.integers(0, 3, (64, 128)) + 26000
    Image.fromarray(instance_ids.astype(np.uint16)).save(labels / name.replace("labelIds", "instanceIds"))
    out = tmp_path / "out"
    common = ["--checkpoint", path, "--labels", labels, "--out", out, "--crop-size", 128]
    assert _synthesize(*common, "--instances", labels) == 0  # the preset is found from the 36 channels
    assert _read(out / f"{Path(name).stem}.png").shape == (64, 128, 3)
    assert _synthesize(*common) == 2  # no --instances


def test_gan_synthesize_vae_seed_and_style(tmp_path, vae_ckpt):
    labels = _write_labels(tmp_path / "labels", {"x.png": np.random.default_rng(3).integers(0, 8, (32, 32))})
    style = tmp_path / "style.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 255, (48, 48, 3)).astype(np.uint8)).save(style)

    def run(name: str, *extra: object) -> np.ndarray:
        assert _synthesize("--checkpoint", vae_ckpt, "--labels", labels, "--out", tmp_path / name, *extra) == 0
        return _read(tmp_path / name / "x.png")

    a, a2, b = run("s1", "--seed", 1), run("s1b", "--seed", 1), run("s2", "--seed", 2)
    np.testing.assert_array_equal(a, a2)
    assert not np.array_equal(a, b)
    s, s2 = run("st1", "--style", style, "--seed", 1), run("st1b", "--style", style, "--seed", 1)
    np.testing.assert_array_equal(s, s2)
    assert s.shape == (32, 32, 3)


def test_gan_synthesize_errors(tmp_path, train_ckpt, capsys):
    labels = _write_labels(tmp_path / "labels", {"ok.png": np.zeros((32, 32)), "bad_ids.png": np.full((32, 32), 9)})
    style = tmp_path / "style.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(style)
    out = tmp_path / "out"

    def error(*args: object) -> str:
        assert _synthesize(*args) == 2
        return capsys.readouterr().err

    assert "bad_ids.png" in error("--checkpoint", train_ckpt, "--labels", labels, "--out", out)
    assert "no such directory" in error("--checkpoint", train_ckpt, "--labels", tmp_path / "missing", "--out", out)
    assert "no such file" in error("--checkpoint", tmp_path / "nope.pt", "--labels", labels, "--out", out)
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    assert "torch.load" in error("--checkpoint", tmp_path / "notes.txt", "--labels", labels, "--out", out)
    torch.save([1, 2], tmp_path / "list.pt")
    assert "neither a train_spade.py checkpoint" in error(
        "--checkpoint", tmp_path / "list.pt", "--labels", labels, "--out", out
    )
    msg = error("--checkpoint", train_ckpt, "--labels", labels, "--out", out, "--style", style)
    assert "--style needs a VAE generator" in msg

    g = SPADEGenerator(8, ngf=2, crop_size=32, use_vae=True, z_dim=8)
    torch.save(g.state_dict(), tmp_path / "vae_G.pth")
    msg = error(
        "--checkpoint", tmp_path / "vae_G.pth", "--crop-size", 32, "--labels", labels, "--out", out, "--style", style
    )
    assert "encoder" in msg
    torch.save(SPADEGenerator(8, ngf=4, crop_size=32).state_dict(), tmp_path / "g.pth")
    assert "ngf" in error("--checkpoint", tmp_path / "g.pth", "--ngf", "2", "--labels", labels, "--out", out)


def test_gan_load_model_builds_the_training_spec(train_ckpt, vae_ckpt):
    for path in (train_ckpt, vae_ckpt):  # with and without EMA
        state = load_checkpoint(path)
        model = load_model(path)
        assert model.source == "train_spade"
        assert model.spec == TrainConfig.from_dict(state["config"]).model_spec()
        assert (model.encoder is not None) == model.spec.use_vae
        loaded = model.generator.state_dict()
        weights = state["G"] if state["G_ema"] is None else state["G_ema"]  # the average, when the run kept one
        assert all(torch.equal(loaded[k], v) for k, v in weights.items())
        assert (state["G_ema"] is None) == (path == vae_ckpt)
        assert not model.generator.training
    assert load_model(train_ckpt, overrides={"crop_size": 64}).generator.output_size == (64, 64)
    with pytest.raises(SynthesisError, match="ngf=2, generator has ngf=4"):
        load_model(train_ckpt, overrides={"ngf": 4})
    with pytest.raises(SynthesisError, match=r"overrides: expected keys among .*, got \['norm'\]"):
        load_model(train_ckpt, overrides={"norm": "batch"})
