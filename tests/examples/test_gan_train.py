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
from spade_gan.models.spec import ModelSpec
from spade_gan.training.checkpoints import FORMAT, load_checkpoint
from spade_gan.training.config import TrainConfig
from spade_gan.training.logs import read_log

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


def _train(*args: str) -> int:
    import train_spade

    return train_spade.main([*TINY, *args])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(EXAMPLES), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


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
    assert all(r["lr_G"] == pytest.approx(2e-4) and r["lr_D"] == pytest.approx(8e-4) for r in log)
    assert (out / "samples" / "step_00000002.png").is_file()
    assert (out / "samples" / "step_00000003.png").is_file()
    assert (out / "alignment.json").is_file()


def _assert_equal_state(a: object, b: object, where: str) -> None:
    """``a == b`` for nested state dicts, tensors compared bit-exactly (``torch.equal``)."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for key, value in a.items():
            _assert_equal_state(value, b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param([], id="defaults"),
        # the encoder's noise makes the losses depend on the restored RNG state; the average is restored exactly too
        pytest.param(["--use-vae", "--z-dim", "8", "--ema-decay", "0.9"], id="vae-ema"),
    ],
)
def test_gan_resume_equals_uninterrupted_run(tmp_path, flags):
    # Default outputs (a log line every 10 steps, samples, checkpoints, the end-of-run evaluation): interrupted at
    # step 5 (not a logging step) and at step 10 (one), the run must end bit-equal to an uninterrupted one.
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _train(*flags, "--max-steps", "12", "--out", str(straight)) == 0
    assert _train(*flags, "--max-steps", "5", "--out", str(resumed)) == 0
    assert _train(*flags, "--max-steps", "10", "--out", str(resumed), "--resume") == 0
    assert _train(*flags, "--max-steps", "12", "--out", str(resumed), "--resume") == 0

    a, b = read_log(straight / "log.jsonl"), read_log(resumed / "log.jsonl")
    assert [r["step"] for r in a] == [10, 12]
    assert [{k: v for k, v in r.items() if k != "elapsed_s"} for r in b] == [
        {k: v for k, v in r.items() if k != "elapsed_s"} for r in a
    ]
    sa = load_checkpoint(straight / "checkpoints" / "latest.pt")
    sb = load_checkpoint(resumed / "checkpoints" / "latest.pt")
    assert sa["step"] == sb["step"] == 12
    assert any(k.endswith("running_var") for k in sa["G"])  # the sync-batch running statistics are compared too
    for key in ("G", "D", "E", "G_ema", "ema_updates", "opt_G", "opt_D", "scaler_G", "scaler_D"):
        _assert_equal_state(sa[key], sb[key], key)
    _assert_equal_state(sa["rng"][0]["torch"], sb["rng"][0]["torch"], "rng.torch")
    sample = Path("samples") / "step_00000012.png"
    assert (straight / sample).read_bytes() == (resumed / sample).read_bytes()
    assert (straight / "alignment.json").read_text() == (resumed / "alignment.json").read_text()


def test_log_truncation_on_resume_keeps_what_an_uninterrupted_run_wrote(tmp_path):
    from spade_gan.training.logs import JsonlLogger

    records = [{"step": 10, "G_GAN": 1.0}, {"step": 15, "G_GAN": 2.0}, {"step": 15, "eval": {"miou": 0.5}}]
    records.append({"step": 20, "G_GAN": 3.0})
    logger = JsonlLogger(tmp_path / "log.jsonl")
    for record in records:
        logger.log(record)
    logger.truncate_after(15)
    assert read_log(logger.path) == records[:3]
    logger.truncate_after(15, keep_losses_at_step=False)  # 15 was the stopped run's last step, not a logging step
    assert read_log(logger.path) == [records[0], records[2]]


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


def test_ema_generator_follows_the_update_rule_and_is_what_synthesis_loads(tmp_path):
    from spade_gan.synthesis.loading import load_model
    from spade_gan.training.distributed import DistInfo
    from spade_gan.training.trainer import SPADETrainer

    cfg = TrainConfig(label_nc=8, contain_dontcare=False, use_instance=False, ngf=2, crop_size=32, ema_decay=0.999)
    cfg.resolve()
    trainer = SPADETrainer(cfg, DistInfo(rank=0, world_size=1, device=torch.device("cpu")))
    start = {k: v.clone() for k, v in trainer.G_ema.state_dict().items()}
    with torch.no_grad():
        for p in trainer.G.parameters():
            p.add_(1.0)
    trainer.update_ema()
    decay = min(cfg.ema_decay, 2 / 11)  # the warm-up term after one update
    live = trainer.G.state_dict()
    for name, _ in trainer.G.named_parameters():
        torch.testing.assert_close(trainer.G_ema.state_dict()[name], decay * start[name] + (1 - decay) * live[name])
    for name, _ in trainer.G.named_buffers():
        assert torch.equal(trainer.G_ema.state_dict()[name], live[name])
    assert trainer.G_eval is trainer.G_ema

    out = tmp_path / "ema"
    assert _train("--max-steps", "2", "--out", str(out), "--eval-images", "0", "--ema-decay", "0.999") == 0
    state = load_checkpoint(out / "checkpoints" / "latest.pt")
    loaded = load_model(out / "checkpoints" / "latest.pt").generator.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state["G_ema"].items())
    assert not all(torch.equal(loaded[k], v) for k, v in state["G"].items())  # the live weights differ
    assert _train("--max-steps", "1", "--out", str(tmp_path / "plain"), "--eval-images", "0") == 0  # off by default
    assert load_checkpoint(tmp_path / "plain" / "checkpoints" / "latest.pt")["G_ema"] is None


def test_the_trainer_passes_ids_and_edges_to_the_generator_and_the_map_to_the_discriminator():
    """Cityscapes-style batches (classes, dontcare and instance edges): every SPADE layer gets the ids and the edge
    map (its first convolution by table lookups where the classes are many enough), the discriminator the one-hot
    map with the edge channel."""
    from spade_gan.training.distributed import DistInfo
    from spade_gan.training.trainer import SPADETrainer

    from spadenorm import SPADE

    cfg = TrainConfig(label_nc=4, contain_dontcare=True, use_instance=True, ngf=2, ndf=4, crop_size=32)
    cfg.resolve()
    cfg.amp, cfg.channels_last = "off", False
    trainer = SPADETrainer(cfg, DistInfo(rank=0, world_size=1, device=torch.device("cpu")))
    label = torch.randint(0, 4, (2, 1, 32, 32))
    label[:, :, :4] = 255
    batch = {"label": label, "instance": torch.randint(0, 3, (2, 1, 32, 32)), "image": torch.rand(2, 3, 32, 32)}
    seg, real = trainer.batch_inputs(batch)
    assert seg.ids.shape == (2, 32, 32)
    assert int(seg.ids.max()) == 4  # dontcare mapped after the classes
    assert seg.edges.shape == (2, 1, 32, 32)
    assert seg.map.shape == (2, 6, 32, 32)
    seen_by_spade, seen_by_d = [], []
    for module in trainer.G.modules():
        if isinstance(module, SPADE):
            module.register_forward_pre_hook(
                lambda m, args, kwargs: seen_by_spade.append((args[1], kwargs.get("extra"))), with_kwargs=True
            )
    trainer.D.register_forward_pre_hook(lambda module, args: seen_by_d.append(args[0][:, :6]))
    trainer.generator_step(seg, real)
    trainer.discriminator_step(seg, real)
    spade_layers = sum(isinstance(m, SPADE) for m in trainer.G.modules())
    assert len(seen_by_spade) == 2 * spade_layers  # every layer, in both steps
    assert all(ids is seg.ids and edges is seg.edges for ids, edges in seen_by_spade)
    assert all(torch.equal(m, torch.cat([seg.map, seg.map])) for m in seen_by_d)


def test_auto_precision_resolves_per_dataset_and_device(monkeypatch):
    from spade_gan.training import config as config_module

    for fast in (True, False):
        monkeypatch.setattr(config_module, "bf16_is_fast", lambda device, fast=fast: fast)
        cfg = TrainConfig().resolve(torch.device("cpu"))
        assert (cfg.amp, cfg.channels_last) == (("bf16", True) if fast else ("off", False))
        cfg = TrainConfig(dataset="cityscapes").resolve(torch.device("cpu"))
        assert (cfg.amp, cfg.channels_last) == ("off", False)  # real datasets keep the original's float32
    assert TrainConfig(amp="fp16", channels_last=False).resolve().channels_last is False
    assert TrainConfig(amp="off").resolve().amp == "off"


def test_tensorboard_and_eval_every_write_events_and_log_lines(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    args = ["--max-steps", "4", "--out", str(out), "--log-every", "2", "--sample-every", "2", "--eval-every", "2"]
    assert _train(*args, "--tensorboard") == 0
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"loss/G_GAN", "loss/D_real", "lr/G", "lr/D", "eval/accuracy", "eval/miou"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("loss/G_GAN")] == [2, 4]
    assert [e.step for e in acc.Scalars("eval/accuracy")] == [2, 4]
    assert acc.Scalars("lr/G")[0].value == pytest.approx(2e-4)
    assert "samples" in tags["images"]
    assert [e.step for e in acc.Images("samples")] == [2, 4]
    evals = [r for r in read_log(out / "log.jsonl") if "eval" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert set(evals[0]["eval"]) == {"accuracy", "miou"}


def test_tensorboard_resume_replaces_the_events_past_the_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    common = ["--out", str(out), "--log-every", "1", "--save-every", "2", "--eval-images", "0", "--tensorboard"]
    assert _train(*common, "--max-steps", "4") == 0
    # as if the run had been killed after step 4 with its last checkpoint at step 2
    assert _train(*common, "--max-steps", "4", "--resume", str(out / "checkpoints" / "step_00000002.pt")) == 0
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/G_GAN")] == [1, 2, 3, 4]


def test_a_generator_the_configuration_cannot_build_is_a_clear_error(tmp_path, capsys):
    assert _train("--max-steps", "1", "--out", str(tmp_path), "--generator", "pix2pixhd", "--use-vae") == 2
    assert "--generator pix2pixhd: generator='pix2pixhd' has no style input" in capsys.readouterr().err
    assert _train("--max-steps", "1", "--out", str(tmp_path), "--generator", "concat", "--crop-size", "36") == 2
    assert "needs an output whose sides are multiples of 8, got 36x36" in capsys.readouterr().err


def test_baseline_width_is_recorded_in_the_checkpoint(tmp_path):
    out = tmp_path / "p2p"
    assert _train("--max-steps", "1", "--out", str(out), "--generator", "pix2pixhd", "--eval-images", "0") == 0
    cfg = TrainConfig.from_dict(load_checkpoint(out / "checkpoints" / "latest.pt")["config"])
    assert cfg.baseline_width == cfg.model_spec().matched_baseline_width()
    assert cfg.model_spec().build_generator().stem[1].out_channels == cfg.baseline_width


def test_eval_flags_are_checked(capsys):
    import train_spade

    with pytest.raises(SystemExit):
        train_spade.main(["--eval-every", "-1"])
    assert "--eval-every must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_spade.main(["--inception-weights", "x.pth"])
    assert "--inception-weights is used by --eval-every N" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_spade.main(["--ema-decay", "1"])
    assert "--ema-decay must lie in [0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_spade.main(["--eval-every", "5", "--eval-images", "0"])
    assert "--eval-every needs held-out images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_spade.main(["--eval-every", "5", "--dataset", "cityscapes"])
    assert "pass --inception-weights for FID/KID" in capsys.readouterr().err


def test_default_schedule_on_the_synthetic_scenes_decays_the_learning_rate():
    from spade_gan.training.prepare import total_steps
    from spade_gan.training.trainer import learning_rate

    cfg = TrainConfig().resolve()
    assert (cfg.max_steps, cfg.epochs, cfg.decay_epochs, cfg.lr) == (None, 3, 4, 4e-4)
    assert total_steps(cfg, 128) == 896
    assert [learning_rate(cfg, e) / cfg.lr for e in range(7)] == pytest.approx([1, 1, 1, 1, 0.75, 0.5, 0.25])
    cfg = TrainConfig(max_steps=10).resolve()  # an explicit budget keeps the learning rate constant
    assert (cfg.epochs, cfg.decay_epochs) == (None, 0)
    assert learning_rate(cfg, 5) == cfg.lr
    cfg = TrainConfig(dataset="cityscapes").resolve()
    assert (cfg.epochs, cfg.decay_epochs, cfg.lr) == (50, 0, 2e-4)  # the original's
    assert TrainConfig(lr=1e-3).resolve().lr == 1e-3


def test_train_config_produces_the_model_spec_once_resolved():
    with pytest.raises(ValueError, match="label_nc, contain_dontcare, use_instance, crop_size, aspect_ratio"):
        TrainConfig().model_spec()
    cfg = TrainConfig(label_nc=8, contain_dontcare=False, use_instance=False, use_vae=True, z_dim=8).resolve()
    assert cfg.model_spec() == ModelSpec(
        label_nc=8, contain_dontcare=False, use_instance=False, ngf=16, crop_size=64, use_vae=True, z_dim=8,
    )  # fmt: skip
    assert TrainConfig(spade_hidden=32).resolve().spade_hidden == 32
    # a configuration from before --spade-hidden (no key) builds the original's 128
    old = TrainConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k != "spade_hidden"})
    assert old.model_spec().spade_hidden == 128


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
