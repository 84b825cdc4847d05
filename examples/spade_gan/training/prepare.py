"""Setting up a training run from its configuration: resume state, data, networks, data order, fixed batches.

The order of the steps matters for exact resumes: the trainer is built (its weights drawn from ``seed``), the
checkpoint's state is loaded, the training RNG stream (VAE noise) is seeded per rank and then, on resume,
overwritten with the checkpoint's RNG states; nothing after that touches the global RNG before the first step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, default_collate

from ..data import build_dataset
from ..data.build import LabelledDataset
from ..data.errors import DatasetLayoutError
from ..data.order import KeyedDataset, StepBatchSampler, steps_per_epoch
from ..models.baselines import BASELINES
from ..scoring.fidelity import load_inception
from .checkpoints import LATEST, load_checkpoint, restore_rng_state
from .config import ARCHITECTURE_KEYS, TRAINING_KEYS, TrainConfig
from .distributed import DistInfo
from .logs import JsonlLogger, open_tensorboard
from .losses import VGGLoss
from .trainer import SPADETrainer

SAMPLE_COLUMNS = 8
"""Columns of the sample grids: the size of the fixed batch they show."""


@dataclass
class TrainingRun:
    """Everything the training loop needs.

    Attributes:
        cfg: the resolved configuration (checkpoint values on resume, the dataset's label layout filled in).
        info: rank, world size and device.
        trainer: networks, optimisers and update steps, at step ``start``.
        loader: the batches of steps ``start .. total - 1`` for this rank.
        start: the first step to run (0, or the checkpoint's step).
        total: one past the last step.
        steps_per_epoch: full global batches per pass over the data.
        sample_batch: the fixed batch the sample grids show.
        eval_set: held-out items for the evaluations: the synthetic val scenes; for the other datasets their val
            split when ``--eval-every`` asks for FID/KID; else ``None``.
        logger: the ``log.jsonl`` writer on rank 0, ``None`` elsewhere.
        board: the TensorBoard ``SummaryWriter`` on rank 0 with ``--tensorboard``, else ``None``.
        inception: the FID feature extractor with ``--inception-weights``, else ``None``.
    """

    cfg: TrainConfig
    info: DistInfo
    trainer: SPADETrainer
    loader: DataLoader
    start: int
    total: int
    steps_per_epoch: int
    sample_batch: dict[str, Any]
    eval_set: LabelledDataset | None
    logger: JsonlLogger | None
    board: Any = None
    inception: nn.Module | None = None

    @property
    def out(self) -> Path:
        """The run folder (``--out``)."""
        return Path(self.cfg.out)


def prepare_run(cfg: TrainConfig, info: DistInfo) -> TrainingRun:
    """Resolve ``cfg`` (taking the checkpoint's values on ``--resume``), build data and networks, and restore the
    checkpoint's state and RNG streams."""
    resume_state = restore_config(cfg, info)
    cfg.resolve(info.device)
    inception = load_inception(cfg.inception_weights) if cfg.inception_weights and info.is_main else None
    dataset = training_dataset(cfg)
    if cfg.generator in BASELINES and cfg.baseline_width is None:
        cfg.baseline_width = cfg.model_spec().matched_baseline_width()  # recorded, so checkpoints rebuild it as is
    trainer, start = build_trainer(cfg, info, resume_state)
    per_epoch = steps_per_epoch(len(dataset), cfg.batch_size, info.world_size)
    total = total_steps(cfg, per_epoch)
    eval_set = eval_dataset(cfg)
    logger = JsonlLogger(Path(cfg.out) / "log.jsonl") if info.is_main else None
    if logger is not None:
        # A run that stopped at ``start`` logged its losses there as its last step; one that goes on past ``start``
        # keeps that record only where ``start`` is a logging step, as an uninterrupted run writes it.
        logger.truncate_after(start, keep_losses_at_step=start >= total or cfg.is_log_step(start))
    board = open_tensorboard(Path(cfg.out) / "tensorboard", start) if cfg.tensorboard and info.is_main else None
    info.say(
        f"training {cfg.dataset} {cfg.crop_size}px, ngf {cfg.ngf}, ndf {cfg.ndf}, batch {cfg.batch_size} x "
        f"{info.world_size} process(es), steps {start} -> {total} on {info.device}; outputs in {cfg.out}",
    )
    return TrainingRun(
        cfg=cfg,
        info=info,
        trainer=trainer,
        loader=data_loader(cfg, info, dataset, start, total),
        start=start,
        total=total,
        steps_per_epoch=per_epoch,
        sample_batch=sample_batch(cfg, dataset, eval_set),
        eval_set=eval_set,
        logger=logger,
        board=board,
        inception=inception,
    )


def restore_config(cfg: TrainConfig, info: DistInfo) -> dict[str, Any] | None:
    """With ``--resume``: the checkpoint, after copying its architecture and training keys into ``cfg`` (and its
    ``max_steps`` unless one is given). Without: ``None``."""
    if not cfg.resume:
        return None
    path = Path(cfg.out) / "checkpoints" / LATEST if cfg.resume == "latest" else Path(cfg.resume)
    state = load_checkpoint(path, map_location="cpu")
    saved = TrainConfig.from_dict(state["config"])
    for key in (*ARCHITECTURE_KEYS, *TRAINING_KEYS):
        setattr(cfg, key, getattr(saved, key))
    if cfg.max_steps is None:
        cfg.max_steps = saved.max_steps
    info.say(f"resuming from {path} at step {state['step']}")
    return state


def training_dataset(cfg: TrainConfig) -> LabelledDataset:
    """The training split; its label layout (which fixes the model's input) is copied into ``cfg``."""
    dataset = build_dataset(cfg.dataset, cfg.dataset_options())
    cfg.label_nc = int(dataset.label_nc)
    cfg.contain_dontcare = bool(dataset.contain_dontcare)
    cfg.use_instance = bool(dataset.use_instance)
    return dataset


def build_trainer(cfg: TrainConfig, info: DistInfo, resume_state: dict[str, Any] | None) -> tuple[SPADETrainer, int]:
    """The trainer and its first step: fresh at step 0, or the checkpoint's networks, optimisers and RNG states."""
    vgg = None
    if cfg.vgg_weights:
        vgg = VGGLoss.from_file(cfg.vgg_weights, lambda_vgg=cfg.lambda_vgg)
    else:
        info.say("note: no --vgg-weights given, so the VGG perceptual loss is off (hinge + feature matching only)")
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
            info.say(f"note: checkpoint has RNG states of {len(rng)} processes, this run has {info.world_size}")
    return trainer, start


def total_steps(cfg: TrainConfig, per_epoch: int) -> int:
    """``max_steps``, or ``(epochs + decay_epochs)`` epochs of ``per_epoch`` steps.

    Raises:
        ValueError: neither ``max_steps`` nor ``epochs`` is set (:meth:`TrainConfig.resolve` sets one).
    """
    if cfg.max_steps is not None:
        return cfg.max_steps
    if cfg.epochs is None:
        raise ValueError("TrainConfig: max_steps or epochs must be set (call resolve() first), got neither")
    return (cfg.epochs + cfg.decay_epochs) * per_epoch


def data_loader(cfg: TrainConfig, info: DistInfo, dataset: LabelledDataset, start: int, total: int) -> DataLoader:
    """The batches of steps ``start .. total - 1`` for this rank, in the order of :mod:`spade_gan.data.order`."""
    sampler = StepBatchSampler(
        len(dataset),
        cfg.batch_size,
        seed=cfg.seed,
        start_step=start,
        total_steps=total,
        rank=info.rank,
        world_size=info.world_size,
    )
    return DataLoader(
        KeyedDataset(dataset, cfg.seed),
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=info.device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed),  # keeps the loader's seed draw off the global RNG
    )


def eval_dataset(cfg: TrainConfig) -> LabelledDataset | None:
    """Held-out items: the synthetic data's val split (``eval_images`` scenes); for cityscapes / ade20k / coco the
    first ``eval_images`` items of their val split when ``--eval-every`` computes FID/KID; else ``None``.

    Raises:
        DatasetLayoutError: FID/KID during training on a ``custom`` dataset (it has no val split here).
    """
    if cfg.eval_images < 1:
        return None
    if cfg.dataset == "synthetic":
        return build_dataset(
            "synthetic", split="val", crop_size=cfg.crop_size, aspect_ratio=cfg.aspect_ratio, num_images=cfg.eval_images
        )
    if not (cfg.eval_every and cfg.inception_weights):
        return None
    if cfg.dataset == "custom":
        raise DatasetLayoutError(
            "--eval-every with --inception-weights: the custom dataset has no val split here; evaluate checkpoints "
            "with examples/evaluate.py --dataset custom --label-dir VAL_LABELS --image-dir VAL_IMAGES"
        )
    val = build_dataset(cfg.dataset, replace(cfg.dataset_options(), split="val"))
    return Subset(val, range(min(cfg.eval_images, len(val))))  # type: ignore[return-value]


def sample_batch(cfg: TrainConfig, dataset: LabelledDataset, eval_set: LabelledDataset | None) -> dict[str, Any]:
    """The fixed batch of the sample grids: the first held-out scenes, else the first training items (as augmented
    in epoch 0)."""
    if eval_set is not None:
        return default_collate([eval_set[k] for k in range(min(SAMPLE_COLUMNS, len(eval_set)))])
    keyed = KeyedDataset(dataset, cfg.seed)
    return default_collate([keyed[(0, k)] for k in range(min(SAMPLE_COLUMNS, len(keyed)))])
