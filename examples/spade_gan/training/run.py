"""A training run of ``train_spade.py``: set up, train step by step, write the run's outputs, report the metric.

Outputs under ``cfg.out``: ``checkpoints/latest.pt`` (+ the last ``keep`` step files), ``samples/step_*.png`` (rows:
label, generated, real), ``log.jsonl`` (one JSON object of losses per logged step, and one ``{"step": ..., "eval":
{...}}`` per ``--eval-every`` evaluation), with ``--tensorboard`` the same scalars, the sample grids and the
evaluations as TensorBoard events in ``tensorboard/``, and, for the synthetic data, ``alignment.json``. Only rank 0
writes; every rank takes part in the collective steps (checksums, RNG gathering).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..data import colorize_labels
from ..images import save_grid
from ..scoring.generator_scores import QualityOptions, format_results, score_generator
from .alignment_report import EVAL_SEED, alignment_table, evaluate_generator
from .checkpoints import capture_rng_state, make_checkpoint, save_checkpoint
from .config import TrainConfig
from .distributed import cleanup_distributed, gather_objects, init_distributed, module_checksum
from .logs import format_losses, scalar_losses
from .prepare import TrainingRun, prepare_run
from .trainer import SPADETrainer

if TYPE_CHECKING:
    from tqdm import tqdm


def train(cfg: TrainConfig) -> int:
    """Train as ``cfg`` says (under ``torchrun``: one process of the group) and return the last step reached.

    Raises:
        CheckpointError, DatasetLayoutError, LabelRangeError, FileNotFoundError: unusable inputs, with messages
            naming the file.
    """
    info = init_distributed(cfg.device)
    run: TrainingRun | None = None
    try:
        run = prepare_run(cfg, info)
        step = train_steps(run)
        report_alignment(run)
        return step
    finally:
        if run is not None and run.board is not None:
            run.board.close()
        cleanup_distributed()


def train_steps(run: TrainingRun) -> int:
    """Steps ``run.start .. run.total - 1``: a generator and a discriminator update each, then the step's outputs.
    Returns the last step reached."""
    trainer, info = run.trainer, run.info
    trainer.train(True)
    progress = _progress_bar(run)
    t0 = time.perf_counter()
    step = run.start
    for step_index, batch in zip(range(run.start, run.total), run.loader, strict=False):
        epoch = step_index // run.steps_per_epoch
        trainer.set_epoch(epoch)
        seg, real = trainer.batch_inputs(batch)
        g_terms, _ = trainer.generator_step(seg, real)
        d_terms = trainer.discriminator_step(seg, real)
        step = step_index + 1
        losses = scalar_losses({**g_terms, **d_terms})
        log_step(run, step, epoch, losses, t0)
        if progress is not None:
            progress.update(1)
            if step % run.cfg.log_every == 0:
                progress.set_postfix_str(format_losses(losses), refresh=False)
        write_step_outputs(run, step)
        if run.cfg.eval_every and step % run.cfg.eval_every == 0 and info.is_main:
            evaluate_during_training(run, step)
    if progress is not None:
        progress.close()
    if step == run.start and run.start < run.total:
        raise RuntimeError("the data loader produced no batches")
    if run.start >= run.total:
        info.say(f"checkpoint is at step {run.start}, already >= --max-steps {run.total}: nothing to train")
    info.say(f"trained {step - run.start} steps in {time.perf_counter() - t0:.1f} s")
    return step


def log_step(run: TrainingRun, step: int, epoch: int, losses: dict[str, float], t0: float) -> None:
    """Append the step's losses and learning rates to ``log.jsonl`` every ``log_every`` steps and at the end; with
    ``log_checksums`` every step, with every rank's weight checksum (a collective: all ranks call this)."""
    cfg, trainer = run.cfg, run.trainer
    checksums = gather_objects(module_checksum(*trainer.networks()), run.info) if cfg.log_checksums else None
    if run.logger is None or not (cfg.is_log_step(step) or step == run.total):
        return
    record: dict[str, Any] = {
        "step": step,
        "epoch": epoch,
        "lr_G": trainer.opt_G.param_groups[0]["lr"],
        "lr_D": trainer.opt_D.param_groups[0]["lr"],
        **losses,
        "elapsed_s": round(time.perf_counter() - t0, 3),
    }
    if checksums is not None:
        record["checksums"] = checksums
    run.logger.log(record)
    if run.board is not None:
        for name, value in losses.items():
            run.board.add_scalar(f"loss/{name}", value, step)
        run.board.add_scalar("lr/G", record["lr_G"], step)
        run.board.add_scalar("lr/D", record["lr_D"], step)


def write_step_outputs(run: TrainingRun, step: int) -> None:
    """A sample grid every ``sample_every`` steps and a checkpoint every ``save_every`` steps, both at the end."""
    cfg, info = run.cfg, run.info
    if info.is_main and (step % cfg.sample_every == 0 or step == run.total):
        grid = save_samples(run.trainer, run.sample_batch, run.out / "samples" / f"step_{step:08d}.png")
        if run.board is not None:
            run.board.add_image("samples", grid, step, dataformats="HWC")
    if step % cfg.save_every == 0 or step == run.total:
        rng = gather_objects(capture_rng_state(info.device), info)  # every rank's RNG, for an exact resume
        if info.is_main:
            state = make_checkpoint(cfg.to_dict(), step, run.trainer.state_dict(), rng)
            save_checkpoint(state, run.out / "checkpoints", keep=cfg.keep)


def save_samples(trainer: SPADETrainer, batch: dict[str, Any], path: Path) -> np.ndarray:
    """A PNG grid of ``batch``: rows label (colourised), generated (z from the real image with VAE), real. Returns
    the grid (uint8, HWC)."""
    seg, real = trainer.batch_inputs(batch)
    fake = trainer.generate(seg, style=real, generator=torch.Generator().manual_seed(EVAL_SEED))
    labels = colorize_labels(batch["label"], trainer.spec.label_nc + int(trainer.spec.contain_dontcare))
    return save_grid([labels, fake.cpu(), real.cpu()], path)


def evaluate_during_training(run: TrainingRun, step: int) -> dict[str, Any]:
    """The ``--eval-every`` evaluation on the held-out maps (rank 0): alignment on the synthetic scenes, FID/KID
    with ``--inception-weights``; logged to ``log.jsonl`` (``{"step", "eval"}``), TensorBoard and stderr."""
    trainer = run.trainer
    g = torch.Generator().manual_seed(EVAL_SEED)
    options = QualityOptions(alignment=run.cfg.dataset == "synthetic", inception=run.inception)
    if run.eval_set is None or not options.anything:
        return {}

    def generate(batch: Mapping[str, Any]) -> Tensor:
        return trainer.generate(trainer.batch_inputs(batch)[0], generator=g)

    results = score_generator(generate, run.eval_set, options)
    scores = {**results.get("alignment", {}), **{k: results[k] for k in ("fid", "kid_mean", "kid_std") if k in results}}
    if run.logger is not None:
        run.logger.log({"step": step, "eval": scores})
    if run.board is not None:
        for name, value in scores.items():
            run.board.add_scalar(f"eval/{name}", value, step)
    run.info.say(f"step {step} evaluation: " + format_results(results).replace("\n", ";"))
    return scores


def report_alignment(run: TrainingRun) -> None:
    """Print the alignment table and write ``alignment.json`` (synthetic data only; every rank evaluates)."""
    if run.eval_set is None or run.cfg.dataset != "synthetic":
        run.info.say("alignment metric: only defined for the synthetic scenes; skipped")
        return
    results = evaluate_generator(run.trainer, run.eval_set)
    if run.info.is_main:
        print(alignment_table(results, len(run.eval_set), run.cfg.crop_size))
        (run.out / "alignment.json").write_text(json.dumps(results, indent=2) + "\n")


def _progress_bar(run: TrainingRun) -> tqdm | None:
    """A tqdm bar on stderr on rank 0 (``None`` elsewhere), starting at the resumed step."""
    if not run.info.is_main:
        return None
    from tqdm import tqdm

    return tqdm(total=run.total, initial=run.start, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)
