"""train_spade.py: outputs of a tiny run, exact resume, SIGKILL safety, DDP on gloo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from spade_gan.config import TrainConfig
from spade_gan.logging_utils import read_log
from spade_gan.model_spec import ModelSpec
from spade_gan.train_checkpoints import FORMAT, load_checkpoint

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REPO = EXAMPLES.parent
TINY = [
    "--crop-size",
    "32",
    "--ngf",
    "2",
    "--ndf",
    "4",
    "--batch-size",
    "2",
    "--num-images",
    "16",
    "--eval-images",
    "4",
]
LOSS_KEYS = ("G_GAN", "G_GAN_Feat", "KLD", "D_Fake", "D_real")


def _train(*args: str) -> int:
    import train_spade

    return train_spade.main([*TINY, *args])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(EXAMPLES), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _losses(log: list[dict]) -> list[tuple]:
    return [(r["step"], *(r.get(k) for k in LOSS_KEYS)) for r in log]


def test_gan_tiny_run_writes_checkpoint_log_and_samples(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train("--max-steps", "3", "--out", str(out), "--sample-every", "2", "--log-every", "1") == 0
    printed = capsys.readouterr().out
    assert printed.count("perceptual loss is off") == 1
    assert "accuracy" in printed
    assert "chance" in printed

    state = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)
    assert state["format"] == FORMAT
    assert state["step"] == 3
    assert state["E"] is None
    cfg = state["config"]
    for key in ("dataset", "label_nc", "contain_dontcare", "use_instance", "ngf", "ndf"):
        assert key in cfg
    assert cfg["crop_size"] == 32
    assert cfg["norm"] == "sync_batch"
    spec = TrainConfig.from_dict(cfg).model_spec()  # the architecture the run built its generator from
    assert (spec.semantic_nc, spec.crop_size, spec.ngf, spec.use_vae) == (8, 32, 2, False)
    assert {"G", "D", "opt_G", "opt_D", "rng"} <= set(state)

    log = read_log(out / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(r["lr_G"] == pytest.approx(1e-4) and r["lr_D"] == pytest.approx(4e-4) for r in log)
    assert (out / "samples" / "step_00000002.png").is_file()
    assert (out / "samples" / "step_00000003.png").is_file()
    assert (out / "alignment.json").is_file()


def test_gan_resume_equals_uninterrupted_run(tmp_path):
    # VAE on: the encoder's noise makes the losses depend on the restored RNG state
    common = ["--use-vae", "--z-dim", "8", "--log-every", "1", "--save-every", "2", "--sample-every", "100"]
    common += ["--eval-images", "0"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _train(*common, "--max-steps", "4", "--out", str(straight)) == 0
    assert _train(*common, "--max-steps", "2", "--out", str(resumed)) == 0
    assert _train(*common, "--max-steps", "4", "--out", str(resumed), "--resume") == 0

    a, b = read_log(straight / "log.jsonl"), read_log(resumed / "log.jsonl")
    assert [r["step"] for r in b] == list(range(1, 5))
    assert _losses(a) == _losses(b)
    sa = load_checkpoint(straight / "checkpoints" / "latest.pt")
    sb = load_checkpoint(resumed / "checkpoints" / "latest.pt")
    for net in ("G", "D", "E"):
        for key, value in sa[net].items():
            assert torch.equal(value, sb[net][key]), f"{net}.{key}"


def test_gan_amp_bf16_channels_last_smoke(tmp_path):
    out = tmp_path / "amp"
    args = ["--max-steps", "2", "--out", str(out), "--amp", "bf16", "--channels-last", "--log-every", "1"]
    assert _train(*args, "--eval-images", "0") == 0
    log = read_log(out / "log.jsonl")
    assert all(torch.isfinite(torch.tensor([r[k] for k in ("G_GAN", "D_Fake", "D_real")])).all() for r in log)


def test_gan_resume_errors(tmp_path, capsys):
    assert _train("--max-steps", "1", "--out", str(tmp_path / "none"), "--resume") == 2
    assert "no such checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    torch.save({"weight": torch.zeros(1)}, bad)
    assert _train("--max-steps", "1", "--out", str(tmp_path), "--resume", str(bad)) == 2
    assert "not a train_spade.py checkpoint" in capsys.readouterr().err
    (tmp_path / "log.txt").write_text("not a checkpoint\n")
    assert _train("--max-steps", "1", "--out", str(tmp_path), "--resume", str(tmp_path / "log.txt")) == 2
    assert "not a file torch.load(weights_only=True) reads" in capsys.readouterr().err


def test_train_config_produces_the_model_spec_once_resolved():
    with pytest.raises(ValueError, match="label_nc, contain_dontcare, use_instance, crop_size, aspect_ratio"):
        TrainConfig().model_spec()
    cfg = TrainConfig(label_nc=8, contain_dontcare=False, use_instance=False, use_vae=True, z_dim=8).resolve()
    assert cfg.model_spec() == ModelSpec(
        label_nc=8, contain_dontcare=False, use_instance=False, ngf=16, crop_size=64, use_vae=True, z_dim=8
    )


def _wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"training exited early with {proc.returncode}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def _checkpoint_step(path: Path) -> int:
    return int(torch.load(path, weights_only=True)["step"]) if path.exists() else -1


def test_gan_sigkill_leaves_loadable_checkpoint(tmp_path):
    out = tmp_path / "run"
    latest = out / "checkpoints" / "latest.pt"
    args = [*TINY, "--out", str(out), "--save-every", "1", "--sample-every", "1000", "--keep", "2"]
    cmd = [sys.executable, str(EXAMPLES / "train_spade.py"), *args]
    last = -1
    for round_, delay in enumerate((0.0, 0.13, 0.31)):
        run = cmd + ["--max-steps", "500"] + (["--resume"] if round_ else [])
        proc = subprocess.Popen(run, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(lambda: _checkpoint_step(latest) > last, timeout=60, proc=proc)  # noqa: B023
            time.sleep(delay)  # kill at varying moments, most likely while a checkpoint is being written
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        state = load_checkpoint(latest)  # a whole file, old or new, never a torn one
        assert state["step"] > last
        last = state["step"]
    done = subprocess.run(
        [*cmd, "--max-steps", str(last + 2), "--resume"], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert f"resuming from {latest} at step {last}" in done.stdout
    assert load_checkpoint(latest)["step"] == last + 2
    steps = [r["step"] for r in read_log(out / "log.jsonl")]
    assert steps == sorted(steps)
    assert steps[-1] == last + 2
    assert len(list((out / "checkpoints").glob("step_*.pt"))) <= 2


def test_gan_ddp_gloo_ranks_hold_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(EXAMPLES / "train_spade.py"),
        *TINY,
        "--device",
        "cpu",
        "--max-steps",
        "4",
        "--log-checksums",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    log = read_log(out / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    for record in log:
        assert len(record["checksums"]) == 2
        assert record["checksums"][0] == record["checksums"][1], record
    assert len({r["checksums"][0] for r in log}) == 4  # the weights do change every step
    state = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert state["step"] == 4
    assert len(state["rng"]) == 2
    assert "2 process(es)" in done.stdout
