"""Training configuration of ``train_spade.py``: one dataclass, its command line, and plain-dict round trips.

The generator's architecture is listed once, as the fields of :class:`~spade_gan.models.spec.ModelSpec`: the
configuration's fields of the same names (:data:`MODEL_KEYS`) are what :meth:`TrainConfig.model_spec` passes on, and
with the dataset and the discriminator's fields what ``--resume`` takes from a checkpoint (:data:`ARCHITECTURE_KEYS`).

The defaults train a small model on the built-in synthetic scenes on a CPU in a few minutes; the original SPADE's
values (ngf 64, 256 crops, batch 32 over 8 GPUs, 50 + 50 epochs) are reached by passing them explicitly.
Optimiser defaults are the original's: Adam with betas (0, 0.9) and, with TTUR (on by default), learning rates
``lr / 2`` for the generator and ``2 lr`` for the discriminator, i.e. 1e-4 / 4e-4 from ``lr = 2e-4``; only the
short default run on the synthetic scenes starts from ``lr = 4e-4`` (2e-4 / 8e-4), see :meth:`TrainConfig.resolve`.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from spadenorm.functional import NormName

from .. import command_line
from ..data import DATASETS, DatasetOptions
from ..data.build import preset_for
from ..models.generator import NUM_UPSAMPLINGS, Upsampling
from ..models.spec import GENERATORS, GeneratorKind, ModelSpec

DEFAULT_SYNTHETIC_EPOCHS = 3
DEFAULT_SYNTHETIC_DECAY_EPOCHS = 4
"""The default run on the synthetic scenes (no --max-steps, no --epochs): ``--epochs 3 --decay-epochs 4``, 7 x 128 =
896 steps of batch 8 over the 1024 training scenes (about 7 minutes on 2 CPU cores with bf16 autocast). As in the
original's niter / niter_decay schedule, the learning rate stays constant for 4 epochs and is lowered by a quarter
after each later one (0.75, 0.5, 0.25 of it in the last three)."""

DEFAULT_LR = 2e-4
"""The original's base learning rate (TTUR: 1e-4 for G, 4e-4 for D)."""

DEFAULT_SYNTHETIC_LR = 4e-4
"""Base learning rate on the synthetic scenes: the short, small-batch default run learns faster with it (seed 0: 0.959
/ 0.864 accuracy / mIoU on the held-out maps after the default schedule, against 0.896 / 0.640 with 2e-4)."""

AMP_CHOICES = ("auto", "off", "fp16", "bf16")
"""``--amp`` values; ``"auto"`` resolves (:meth:`TrainConfig.resolve`) to ``"bf16"`` on the synthetic scenes where the
device runs bf16 fast, else ``"off"`` (the original's float32)."""

DEFAULT_EPOCHS = 50
"""Epochs of a run on a real dataset when neither --max-steps nor --epochs is given (the original's niter)."""

TRAINING_KEYS = (
    "seed",
    "batch_size",
    "lr",
    "beta1",
    "beta2",
    "ttur",
    "epochs",
    "decay_epochs",
    "amp",
    "lambda_feat",
    "lambda_vgg",
    "lambda_kld",
    "no_feat_loss",
    "ema_decay",
)
"""Keys that the loss trajectory depends on; on ``--resume`` they also come from the checkpoint."""


class ConfigError(ValueError):
    """A configuration that cannot be trained (e.g. a generator that does not fit the dataset), naming the flag."""


@dataclass
class TrainConfig:
    """Everything a training run depends on. Only plain values, so :meth:`to_dict` survives ``weights_only``."""

    # data
    dataset: str = "synthetic"
    dataroot: str | None = None
    label_dir: str | None = None
    image_dir: str | None = None
    instance_dir: str | None = None
    label_nc: int | None = None
    contain_dontcare: bool | None = None
    use_instance: bool | None = None
    num_images: int | None = None
    num_workers: int = 0
    # model
    crop_size: int | None = None
    aspect_ratio: float | None = None
    ngf: int = 16
    ndf: int = 16
    num_d: int = 2
    n_layers_d: int = 4
    num_upsampling_layers: Upsampling | None = None
    norm: NormName = "sync_batch"
    generator: GeneratorKind = "spade"
    baseline_width: int | None = None
    spade_hidden: int | None = None
    use_vae: bool = False
    z_dim: int = 256
    # optimisation
    batch_size: int = 8
    max_steps: int | None = None
    epochs: int | None = None
    decay_epochs: int | None = None
    lr: float | None = None
    beta1: float = 0.0
    beta2: float = 0.9
    ttur: bool = True
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    lambda_kld: float = 0.05
    no_feat_loss: bool = False
    ema_decay: float = 0.0
    vgg_weights: str | None = None
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    device: str | None = None
    seed: int = 0
    # output
    out: str = "runs/spade"
    save_every: int = 200
    sample_every: int = 200
    log_every: int = 10
    keep: int = 3
    resume: str | None = None
    eval_images: int = 64
    eval_every: int = 0
    inception_weights: str | None = None
    tensorboard: bool = False
    log_checksums: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lr_g(self) -> float:
        """The generator's learning rate (``lr / 2`` with TTUR); needs :meth:`resolve`."""
        return self.base_lr / 2 if self.ttur else self.base_lr

    @property
    def lr_d(self) -> float:
        """The discriminator's learning rate (``2 lr`` with TTUR); needs :meth:`resolve`."""
        return self.base_lr * 2 if self.ttur else self.base_lr

    @property
    def base_lr(self) -> float:
        """``lr``, set (by the user or :meth:`resolve`)."""
        if self.lr is None:
            raise ValueError("TrainConfig.lr is unset: call resolve() first")
        return self.lr

    def is_log_step(self, step: int) -> bool:
        """Whether a run logs its losses at ``step`` on the way past it: every ``log_every`` steps, and every step
        with ``log_checksums`` (a run also logs its last step, wherever it falls)."""
        return step % self.log_every == 0 or self.log_checksums

    def resolve(self, device: torch.device | None = None) -> TrainConfig:
        """Fill the dataset-dependent defaults from the dataset's preset (geometry, labels, generator depth) and the
        ``"auto"`` precision and memory format for ``device`` (default: the CPU).

        ``amp="auto"`` becomes ``"bf16"`` on the synthetic scenes when bf16 is fast on ``device``
        (:func:`bf16_is_fast`), else ``"off"``; ``channels_last=None`` becomes ``True`` under mixed precision, else
        ``False``. ``lr=None`` becomes :data:`DEFAULT_SYNTHETIC_LR` on the synthetic scenes, :data:`DEFAULT_LR` (the
        original's) elsewhere; ``spade_hidden=None`` the original's 128. The resolved values are what checkpoints
        record.
        """
        if self.amp == "auto":
            native = bf16_is_fast(device or torch.device("cpu"))
            self.amp = "bf16" if self.dataset == "synthetic" and native else "off"
        if self.channels_last is None:
            self.channels_last = self.amp != "off"
        if self.lr is None:
            self.lr = DEFAULT_SYNTHETIC_LR if self.dataset == "synthetic" else DEFAULT_LR
        if self.spade_hidden is None:
            self.spade_hidden = ModelSpec.spade_hidden
        preset = preset_for(self.dataset)
        if self.crop_size is None:
            self.crop_size = preset.crop_size
        if self.aspect_ratio is None:
            self.aspect_ratio = preset.aspect_ratio
        if self.num_upsampling_layers is None:
            self.num_upsampling_layers = preset.num_upsampling_layers
        if self.max_steps is None and self.epochs is None:
            synthetic = self.dataset == "synthetic"
            self.epochs = DEFAULT_SYNTHETIC_EPOCHS if synthetic else DEFAULT_EPOCHS
            if self.decay_epochs is None and synthetic:
                self.decay_epochs = DEFAULT_SYNTHETIC_DECAY_EPOCHS
        if self.decay_epochs is None:
            self.decay_epochs = 0
        return self

    def dataset_options(self) -> DatasetOptions:
        """The training split's :class:`~spade_gan.data.build.DatasetOptions` (``None`` fields: preset defaults)."""
        return DatasetOptions(
            split="train",
            dataroot=self.dataroot,
            label_dir=self.label_dir,
            image_dir=self.image_dir,
            instance_dir=self.instance_dir,
            label_nc=self.label_nc,
            contain_dontcare=self.contain_dontcare,
            use_instance=self.use_instance,
            crop_size=self.crop_size,
            aspect_ratio=self.aspect_ratio,
            num_images=self.num_images,
        )

    def model_spec(self) -> ModelSpec:
        """The generator's (and encoder's) architecture.

        Needs :meth:`resolve` (geometry, depth) and the dataset's label layout (``label_nc``, ``contain_dontcare``,
        ``use_instance``, which the training run copies from the dataset it built).

        Raises:
            ValueError: naming the fields still unset.
            ConfigError: an architecture the configuration cannot build (e.g. ``--generator clade`` with instance
                maps), naming the flag.
        """
        values = {name: getattr(self, name) for name in MODEL_KEYS}
        values["spade_hidden"] = self.spade_hidden or ModelSpec.spade_hidden  # configurations without it: the default
        unset = [name for name, value in values.items() if value is None and _SPEC_DEFAULTS[name] is not None]
        if unset:
            raise ValueError(
                f"TrainConfig.model_spec: {', '.join(unset)} must be set (call resolve() and copy the dataset's label "
                "layout first), got None"
            )
        try:
            return ModelSpec(**values)
        except ValueError as exc:  # an architecture this configuration cannot build
            raise ConfigError(f"--generator {self.generator}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (str, int, float, bool, None, nested dicts) for checkpoints and logs."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config of a checkpoint; unknown keys (from newer versions) go to ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in values.items() if k in names}
        extra = {k: v for k, v in values.items() if k not in names}
        cfg = cls(**known)
        cfg.extra.update(extra)
        return cfg


MODEL_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name in ModelSpec.__dataclass_fields__)
"""The configuration's fields that are :class:`~spade_gan.models.spec.ModelSpec` fields, in the configuration's order:
the generator's architecture, which :meth:`TrainConfig.model_spec` passes on by name (``spectral``, not a flag, keeps
the spec's default)."""

_SPEC_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelSpec)}

ARCHITECTURE_KEYS = ("dataset", *MODEL_KEYS, "ndf", "num_d", "n_layers_d")
"""Keys that fix the networks' shapes (the dataset's, the generator's and the discriminator's); on ``--resume`` they
come from the checkpoint."""


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``train_spade.py``; every flag maps to a :class:`TrainConfig` field."""
    p = command_line.parser(
        "train_spade.py",
        "Train the SPADE GAN. Without arguments: a small model on the built-in synthetic scenes (CPU, a few minutes), "
        "ending with the alignment metric on held-out label maps.",
    )
    defaults = TrainConfig()
    _add_data_flags(p, defaults)
    _add_model_flags(p, defaults)
    _add_optimisation_flags(p, defaults)
    _add_output_flags(p, defaults)
    return p


def _add_data_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=d.dataset)
    g.add_argument("--dataroot", help="root folder of cityscapes / ade20k / coco")
    g.add_argument("--label-dir", help="custom dataset: folder of label PNGs")
    g.add_argument("--image-dir", help="custom dataset: folder of photos")
    g.add_argument("--instance-dir", help="custom dataset: folder of instance-id PNGs (optional)")
    g.add_argument("--label-nc", type=int, help="number of label ids (required for custom)")
    g.add_argument("--contain-dontcare", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--num-images", type=int, help="synthetic data: number of training scenes (default 1024)")
    g.add_argument("--num-workers", type=int, default=d.num_workers)


def _add_model_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--crop-size", type=int, help="output width (preset default; 64 for synthetic)")
    g.add_argument("--aspect-ratio", type=float, help="output width / height (preset default)")
    g.add_argument("--ngf", type=int, default=d.ngf, help="generator width (original: 64)")
    g.add_argument(
        "--spade-hidden",
        type=int,
        help="width of the SPADE layers' shared conv (default: the original's 128)",
    )
    g.add_argument("--ndf", type=int, default=d.ndf, help="discriminator width (original: 64)")
    g.add_argument("--num-d", type=int, default=d.num_d, help="discriminator scales")
    g.add_argument("--n-layers-d", type=int, default=d.n_layers_d)
    g.add_argument("--num-upsampling-layers", choices=tuple(NUM_UPSAMPLINGS), help="(preset default)")
    g.add_argument("--norm", choices=("instance", "batch", "sync_batch"), default=d.norm, help="SPADE layers' norm")
    g.add_argument(
        "--generator",
        choices=GENERATORS,
        default=d.generator,
        help="spade; clade (class tables instead of SPADE's convs); pix2pixhd / concat (label map at the input only /"
        " at every block, ordinary norms, as many parameters as the SPADE generator)",
    )
    g.add_argument("--use-vae", action="store_true", help="train the style encoder (KL loss) too")
    g.add_argument("--z-dim", type=int, default=d.z_dim)


def _add_optimisation_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    g.add_argument("--max-steps", type=int, help="train this many steps at a constant learning rate")
    g.add_argument(
        "--epochs",
        type=int,
        help=f"epochs at constant lr (niter; default {DEFAULT_SYNTHETIC_EPOCHS} on the synthetic scenes, "
        f"{DEFAULT_EPOCHS} on real data)",
    )
    g.add_argument(
        "--decay-epochs",
        type=int,
        help=f"then linear decay to 0 (niter_decay; default {DEFAULT_SYNTHETIC_DECAY_EPOCHS} on the synthetic scenes "
        "without --max-steps / --epochs, else 0)",
    )
    g.add_argument(
        "--lr",
        type=float,
        help=f"base learning rate (TTUR: lr/2 for G, 2 lr for D); default {DEFAULT_SYNTHETIC_LR} on the synthetic "
        f"scenes, {DEFAULT_LR} (the original's) on real data",
    )
    g.add_argument("--beta1", type=float, default=d.beta1)
    g.add_argument("--beta2", type=float, default=d.beta2)
    g.add_argument("--no-ttur", dest="ttur", action="store_false", help="same lr for G and D")
    g.add_argument("--lambda-feat", type=float, default=d.lambda_feat)
    g.add_argument("--lambda-vgg", type=float, default=d.lambda_vgg)
    g.add_argument("--lambda-kld", type=float, default=d.lambda_kld)
    g.add_argument("--no-feat-loss", action="store_true", help="drop the feature-matching loss")
    g.add_argument(
        "--ema-decay",
        type=float,
        default=d.ema_decay,
        help="keep an exponential moving average of the generator's weights (decay min(d, (1 + n) / (10 + n)) after n "
        "updates; OASIS uses 0.9999) and use it for samples, evaluation and synthesis; 0: off",
    )
    g.add_argument("--vgg-weights", help="torchvision VGG19 state dict; without it the perceptual loss is off")
    g.add_argument(
        "--amp",
        choices=AMP_CHOICES,
        default=d.amp,
        help="autocast dtype; auto: bf16 on the synthetic scenes where the device has fast bf16, else off",
    )
    g.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last memory format (default: on under mixed precision)",
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the networks")
    g.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    g.add_argument("--seed", type=int, default=d.seed)


def _add_output_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--out", default=d.out, help="run folder: checkpoints/, samples/, log.jsonl")
    g.add_argument("--save-every", type=int, default=d.save_every, help="steps between checkpoints")
    g.add_argument("--sample-every", type=int, default=d.sample_every, help="steps between sample grids")
    g.add_argument("--log-every", type=int, default=d.log_every, help="steps between log.jsonl lines")
    g.add_argument("--keep", type=int, default=d.keep, help="step checkpoints kept besides latest.pt")
    g.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        help="continue from a checkpoint (no value: <out>/checkpoints/latest.pt)",
    )
    g.add_argument("--eval-images", type=int, default=d.eval_images, help="held-out maps for the final metric")
    g.add_argument(
        "--eval-every",
        type=int,
        default=d.eval_every,
        help="steps between evaluations on the held-out maps (alignment; FID/KID with --inception-weights); 0: off",
    )
    g.add_argument(
        "--inception-weights",
        help="local torch-fidelity Inception file (pt_inception-2015-12-05-6726825d.pth) for FID/KID in evaluations",
    )
    g.add_argument(
        "--tensorboard", action="store_true", help="also log to <out>/tensorboard (losses, lrs, samples, metrics)"
    )
    g.add_argument("--log-checksums", action="store_true", help="log every rank's weight checksum (DDP tests)")


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    """Parse ``argv`` into a :class:`TrainConfig` (dataset defaults not yet resolved)."""
    args = build_parser().parse_args(argv)
    values = vars(args)
    cfg = TrainConfig(**{k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}})
    positive = ("batch_size", "ngf", "ndf", "num_d", "save_every", "sample_every", "log_every", "keep", "z_dim")
    if cfg.spade_hidden is not None and cfg.spade_hidden < 1:
        build_parser().error(f"--spade-hidden must be >= 1, got {cfg.spade_hidden}")
    for name in positive:
        if getattr(cfg, name) < 1:
            build_parser().error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        build_parser().error(f"--ema-decay must lie in [0, 1) (0: off), got {cfg.ema_decay}")
    if cfg.eval_every < 0:
        build_parser().error(f"--eval-every must be >= 0 (0: off), got {cfg.eval_every}")
    if cfg.inception_weights is not None and not cfg.eval_every:
        build_parser().error("--inception-weights is used by --eval-every N evaluations; pass --eval-every too")
    if cfg.eval_every and cfg.eval_images < 1:
        build_parser().error(f"--eval-every needs held-out images to evaluate, got --eval-images {cfg.eval_images}")
    if cfg.eval_every and cfg.dataset != "synthetic" and cfg.inception_weights is None:
        build_parser().error(
            f"--eval-every on --dataset {cfg.dataset}: the alignment metric exists for the synthetic scenes only; "
            "pass --inception-weights for FID/KID"
        )
    return cfg


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast pays off on ``device``: a CUDA GPU with bf16 in hardware (Ampere and newer), or a CPU with
    AVX-512 BF16 or AMX instructions. Elsewhere bf16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False
