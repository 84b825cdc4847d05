"""Train the SPADE GAN (Park et al. 2019) with spadenorm's SPADE layers.

Without arguments it trains a small model on the built-in synthetic scenes on the CPU (a few minutes on 2 cores)
and ends by printing how well generated images follow held-out label maps (the alignment metric of
``spade_gan.metrics``), next to the real images' score and the chance levels::

    python examples/train_spade.py
    python examples/train_spade.py --dataset ade20k --dataroot ADEChallengeData2016 --ngf 64 --crop-size 256 \\
        --batch-size 4 --epochs 50 --decay-epochs 50 --vgg-weights vgg19-dcbb9e9d.pth --out runs/ade
    torchrun --nproc_per_node=8 examples/train_spade.py ...      # DDP, sync-batch statistics across processes
    python examples/train_spade.py --out runs/ade --resume       # continue exactly where latest.pt left off

Outputs under ``--out``: ``checkpoints/latest.pt`` (+ the last ``--keep`` step files), ``samples/step_*.png`` (rows:
label, generated, real), ``log.jsonl`` (one JSON object of losses per logged step) and ``alignment.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

if __name__ == "__main__":
    # Flush denormal floats to zero. The 0.02-gain init and GAN training produce denormals that slow CPU convs down
    # up to 10x. This must run before the first parallel op: OpenMP worker threads inherit the FP mode only when they
    # are created.
    torch.set_flush_denormal(True)

from torch.utils.data import DataLoader, default_collate

try:
    import spadenorm  # noqa: F401
except ImportError:  # a clone without `pip install -e .`: use the repository's copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spade_gan import metrics
from spade_gan.checkpointing import (
    FORMAT,
    LATEST,
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from spade_gan.config import ARCHITECTURE_KEYS, TRAINING_KEYS, TrainConfig, config_from_args
from spade_gan.data import build_dataset, colorize_labels, to_semantics
from spade_gan.data.errors import DatasetLayoutError, LabelRangeError
from spade_gan.distributed_utils import (
    DistInfo,
    cleanup_distributed,
    gather_objects,
    init_distributed,
    module_checksum,
)
from spade_gan.logging_utils import JsonlLogger, format_losses, save_grid, scalar_losses
from spade_gan.losses import VGGLoss
from spade_gan.sampling import KeyedDataset, StepBatchSampler
from spade_gan.trainer import SPADETrainer

SAMPLE_COLUMNS = 8
EVAL_SEED = 1234


def main(argv: list[str] | None = None) -> int:
    cfg = config_from_args(argv)
    info = init_distributed(cfg.device)
    try:
        return train(cfg, info)
    except (CheckpointError, DatasetLayoutError, LabelRangeError, FileNotFoundError) as exc:
        print(f"train_spade.py: error: {exc}", file=sys.stderr)
        return 2
    finally:
        cleanup_distributed()


def _say(info: DistInfo, *args: object) -> None:
    if info.is_main:
        print(*args, flush=True)


def _semantics(batch: dict, cfg: TrainConfig, trainer: SPADETrainer) -> tuple[torch.Tensor, torch.Tensor]:
    seg = to_semantics(
        batch["label"], batch.get("instance"), label_nc=cfg.label_nc, contain_dontcare=bool(cfg.contain_dontcare)
    )
    return trainer.prepare(seg), trainer.prepare(batch["image"])


def train(cfg: TrainConfig, info: DistInfo) -> int:
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    resume_state = None
    if cfg.resume:
        path = ckpt_dir / LATEST if cfg.resume == "latest" else Path(cfg.resume)
        resume_state = load_checkpoint(path, map_location="cpu")
        saved = TrainConfig.from_dict(resume_state["config"])
        for key in (*ARCHITECTURE_KEYS, *TRAINING_KEYS):
            setattr(cfg, key, getattr(saved, key))
        if cfg.max_steps is None:
            cfg.max_steps = saved.max_steps
        _say(info, f"resuming from {path} at step {resume_state['step']}")
    cfg.resolve()
    assert cfg.crop_size is not None

    dataset = build_dataset(
        cfg.dataset,
        split="train",
        dataroot=cfg.dataroot,
        label_dir=cfg.label_dir,
        image_dir=cfg.image_dir,
        instance_dir=cfg.instance_dir,
        label_nc=cfg.label_nc,
        contain_dontcare=cfg.contain_dontcare,
        use_instance=cfg.use_instance,
        crop_size=cfg.crop_size,
        aspect_ratio=cfg.aspect_ratio,
        num_images=cfg.num_images,
    )
    cfg.label_nc = int(dataset.label_nc)
    cfg.contain_dontcare = bool(dataset.contain_dontcare)
    cfg.use_instance = bool(dataset.use_instance)
    cfg.semantic_nc = int(dataset.semantic_nc)

    vgg = None
    if cfg.vgg_weights:
        vgg = VGGLoss.from_file(cfg.vgg_weights, lambda_vgg=cfg.lambda_vgg)
    else:
        _say(info, "note: no --vgg-weights given, so the VGG perceptual loss is off (hinge + feature matching only)")

    trainer = SPADETrainer(cfg, info, vgg)
    start = 0
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
        start = int(resume_state["step"])
    torch.manual_seed(cfg.seed + 7919 * info.rank)  # the training stream (VAE noise): its own per rank
    if resume_state is not None:
        rng = resume_state.get("rng") or []
        if len(rng) == info.world_size:
            restore_rng_state(rng[info.rank], info.device)
        else:
            _say(info, f"note: checkpoint has RNG states of {len(rng)} processes, this run has {info.world_size}")

    sampler = StepBatchSampler(
        len(dataset),
        cfg.batch_size,
        seed=cfg.seed,
        start_step=start,
        total_steps=1,
        rank=info.rank,
        world_size=info.world_size,
    )
    if cfg.max_steps is not None:
        total = cfg.max_steps
    else:
        assert cfg.epochs is not None
        total = (cfg.epochs + cfg.decay_epochs) * sampler.steps_per_epoch
    sampler.total_steps = total
    loader = DataLoader(
        KeyedDataset(dataset, cfg.seed),
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=info.device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed),  # keeps the loader's seed draw off the global RNG
    )

    # A fixed batch for sample grids: held-out scenes for the synthetic data, the first training items otherwise.
    eval_set = _eval_dataset(cfg)
    sample_source = eval_set if eval_set is not None else KeyedDataset(dataset, cfg.seed)
    keys = range(min(SAMPLE_COLUMNS, len(sample_source)))
    sample_batch = default_collate([sample_source[k if eval_set is not None else (0, k)] for k in keys])

    logger = JsonlLogger(out / "log.jsonl") if info.is_main else None
    if logger is not None:
        logger.truncate_after(start)
    _say(
        info,
        f"training {cfg.dataset} {cfg.crop_size}px, ngf {cfg.ngf}, ndf {cfg.ndf}, batch {cfg.batch_size} x "
        f"{info.world_size} process(es), steps {start} -> {total} on {info.device}; outputs in {out}",
    )

    trainer.train(True)
    progress = _progress(info, total, start)
    t0 = time.perf_counter()
    step = start
    for step_index, batch in zip(range(start, total), loader, strict=False):
        epoch = step_index // sampler.steps_per_epoch
        trainer.set_epoch(epoch)
        seg, real = _semantics(batch, cfg, trainer)
        g_terms, _ = trainer.generator_step(seg, real)
        d_terms = trainer.discriminator_step(seg, real)
        step = step_index + 1
        losses = scalar_losses({**g_terms, **d_terms})
        checksums = gather_objects(module_checksum(*trainer.networks()), info) if cfg.log_checksums else None
        if logger is not None and (step % cfg.log_every == 0 or step == total or checksums is not None):
            record = {
                "step": step,
                "epoch": epoch,
                "lr_G": trainer.opt_G.param_groups[0]["lr"],
                "lr_D": trainer.opt_D.param_groups[0]["lr"],
                **losses,
                "elapsed_s": round(time.perf_counter() - t0, 3),
            }
            if checksums is not None:
                record["checksums"] = checksums
            logger.log(record)
        if progress is not None:
            progress.update(1)
            if step % cfg.log_every == 0:
                progress.set_postfix_str(format_losses(losses), refresh=False)
        if info.is_main and (step % cfg.sample_every == 0 or step == total):
            _save_samples(trainer, sample_batch, cfg, out / "samples" / f"step_{step:08d}.png")
        if step % cfg.save_every == 0 or step == total:
            _save(trainer, cfg, info, step, ckpt_dir)
    if progress is not None:
        progress.close()
    if step == start and start < total:
        raise RuntimeError("the data loader produced no batches")
    if start >= total:
        _say(info, f"checkpoint is at step {start}, already >= --max-steps {total}: nothing to train")
    _say(info, f"trained {step - start} steps in {time.perf_counter() - t0:.1f} s")

    if eval_set is not None:
        results = evaluate(trainer, eval_set, cfg)
        if info.is_main:
            _print_alignment(results, len(eval_set), cfg)
            (out / "alignment.json").write_text(json.dumps(results, indent=2) + "\n")
    else:
        _say(info, "alignment metric: only defined for the synthetic scenes; skipped")
    return 0


def _progress(info: DistInfo, total: int, start: int):
    if not info.is_main:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)


def _eval_dataset(cfg: TrainConfig):
    if cfg.dataset != "synthetic" or cfg.eval_images < 1:
        return None
    return build_dataset(
        "synthetic", split="val", crop_size=cfg.crop_size, aspect_ratio=cfg.aspect_ratio, num_images=cfg.eval_images
    )


def _save(trainer: SPADETrainer, cfg: TrainConfig, info: DistInfo, step: int, ckpt_dir: Path) -> None:
    rng = gather_objects(capture_rng_state(info.device), info)  # every rank's RNG, for an exact resume
    if not info.is_main:
        return
    state = {"format": FORMAT, "config": cfg.to_dict(), "step": step, **trainer.state_dict(), "rng": rng}
    save_checkpoint(state, ckpt_dir, keep=cfg.keep)


def _save_samples(trainer: SPADETrainer, batch: dict, cfg: TrainConfig, path: Path) -> None:
    seg, real = _semantics(batch, cfg, trainer)
    fake = trainer.generate(seg, style=real, generator=torch.Generator().manual_seed(EVAL_SEED))
    labels = colorize_labels(batch["label"], cfg.label_nc + int(bool(cfg.contain_dontcare)))
    save_grid([labels, fake.cpu(), real.cpu()], path)


def evaluate(trainer: SPADETrainer, eval_set, cfg: TrainConfig, batch_size: int = 16) -> dict[str, dict[str, float]]:
    """Alignment of generated images with held-out label maps, with the real images' score and two floors: uniform
    noise (chance) and real images scored against other scenes' maps (what the layout alone explains)."""
    generated, real_meter, noise_meter, layout_meter = (metrics.AlignmentMeter() for _ in range(4))
    g = torch.Generator().manual_seed(EVAL_SEED)
    for first in range(0, len(eval_set), batch_size):
        batch = default_collate([eval_set[i] for i in range(first, min(len(eval_set), first + batch_size))])
        seg, _ = _semantics(batch, cfg, trainer)
        labels, real = batch["label"][:, 0], batch["image"]
        fake = trainer.generate(seg, generator=g).cpu()
        generated.update(fake, labels)
        real_meter.update(real, labels)
        noise_meter.update(torch.rand(real.shape, generator=g) * 2 - 1, labels)
        layout_meter.update(real, labels.roll(1, dims=0))
    return {
        "generated": generated.compute(),
        "real": real_meter.compute(),
        "chance (uniform noise)": noise_meter.compute(),
        "layout floor (real vs other maps)": layout_meter.compute(),
    }


def _print_alignment(results: dict[str, dict[str, float]], n: int, cfg: TrainConfig) -> None:
    print(f"alignment on {n} held-out label maps (val split, {cfg.crop_size}px):")
    for name, r in results.items():
        print(f"  {name:<34} accuracy {r['accuracy']:.3f}   mIoU {r['miou']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
