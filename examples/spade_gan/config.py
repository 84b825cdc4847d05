"""Training configuration of ``train_spade.py``: one dataclass, its command line, and plain-dict round trips.

The generator's architecture is not a second set of fields: :meth:`TrainConfig.model_spec` turns the configuration's
model fields into the :class:`~spade_gan.model_spec.ModelSpec` both training and synthesis build networks from.

The defaults train a small model on the built-in synthetic scenes on a CPU in a few minutes; the original SPADE's
values (ngf 64, 256 crops, batch 32 over 8 GPUs, 50 + 50 epochs) are reached by passing them explicitly.
Optimiser defaults are the original's: Adam with betas (0, 0.9) and, with TTUR (on by default), learning rates
``lr / 2`` for the generator and ``2 lr`` for the discriminator, i.e. 1e-4 / 4e-4 from ``lr = 2e-4``.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from spadenorm.functional import NormName

from .data import DATASETS, DatasetOptions
from .data.build import preset_for
from .generator import NUM_UPSAMPLINGS, Upsampling
from .model_spec import ModelSpec

DEFAULT_SYNTHETIC_STEPS = 500
"""Steps of the default run (no --max-steps, no --epochs, synthetic data): about 8 minutes on 2 CPU cores."""

DEFAULT_EPOCHS = 50
"""Epochs of a run on a real dataset when neither --max-steps nor --epochs is given (the original's niter)."""

ARCHITECTURE_KEYS = (
    "dataset",
    "label_nc",
    "contain_dontcare",
    "use_instance",
    "ngf",
    "ndf",
    "num_d",
    "n_layers_d",
    "num_upsampling_layers",
    "crop_size",
    "aspect_ratio",
    "use_vae",
    "z_dim",
    "norm",
)
"""Keys that fix the networks' shapes; on ``--resume`` they come from the checkpoint."""

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
)
"""Keys that the loss trajectory depends on; on ``--resume`` they also come from the checkpoint."""

_SPEC_FIELDS_SET_LATER = (
    "label_nc",
    "contain_dontcare",
    "use_instance",
    "crop_size",
    "aspect_ratio",
    "num_upsampling_layers",
)
"""Model fields that start as ``None``: :meth:`TrainConfig.resolve` and the dataset fill them."""


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
    use_vae: bool = False
    z_dim: int = 256
    # optimisation
    batch_size: int = 8
    max_steps: int | None = None
    epochs: int | None = None
    decay_epochs: int = 0
    lr: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.9
    ttur: bool = True
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    lambda_kld: float = 0.05
    no_feat_loss: bool = False
    vgg_weights: str | None = None
    amp: str = "off"
    channels_last: bool = False
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
    log_checksums: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lr_g(self) -> float:
        return self.lr / 2 if self.ttur else self.lr

    @property
    def lr_d(self) -> float:
        return self.lr * 2 if self.ttur else self.lr

    def resolve(self) -> TrainConfig:
        """Fill the dataset-dependent defaults from the dataset's preset (geometry, labels, generator depth)."""
        preset = preset_for(self.dataset)
        if self.crop_size is None:
            self.crop_size = preset.crop_size
        if self.aspect_ratio is None:
            self.aspect_ratio = preset.aspect_ratio
        if self.num_upsampling_layers is None:
            self.num_upsampling_layers = preset.num_upsampling_layers
        if self.max_steps is None and self.epochs is None:
            if self.dataset == "synthetic":
                self.max_steps = DEFAULT_SYNTHETIC_STEPS
            else:
                self.epochs = DEFAULT_EPOCHS
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
        """
        if (
            self.label_nc is None
            or self.contain_dontcare is None
            or self.use_instance is None
            or self.crop_size is None
            or self.aspect_ratio is None
            or self.num_upsampling_layers is None
        ):
            unset = [name for name in _SPEC_FIELDS_SET_LATER if getattr(self, name) is None]
            raise ValueError(
                f"TrainConfig.model_spec: {', '.join(unset)} must be set (call resolve() and copy the dataset's label "
                "layout first), got None"
            )
        return ModelSpec(
            label_nc=self.label_nc,
            contain_dontcare=self.contain_dontcare,
            use_instance=self.use_instance,
            ngf=self.ngf,
            num_upsampling_layers=self.num_upsampling_layers,
            crop_size=self.crop_size,
            aspect_ratio=self.aspect_ratio,
            use_vae=self.use_vae,
            z_dim=self.z_dim,
            norm=self.norm,
        )

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


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``train_spade.py``; every flag maps to a :class:`TrainConfig` field."""
    p = argparse.ArgumentParser(
        prog="train_spade.py",
        description="Train the SPADE GAN. Without arguments: a small model on the built-in synthetic scenes (CPU, "
        "a few minutes), ending with the alignment metric on held-out label maps.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
    g.add_argument("--ndf", type=int, default=d.ndf, help="discriminator width (original: 64)")
    g.add_argument("--num-d", type=int, default=d.num_d, help="discriminator scales")
    g.add_argument("--n-layers-d", type=int, default=d.n_layers_d)
    g.add_argument("--num-upsampling-layers", choices=tuple(NUM_UPSAMPLINGS), help="(preset default)")
    g.add_argument("--norm", choices=("instance", "batch", "sync_batch"), default=d.norm, help="SPADE layers' norm")
    g.add_argument("--use-vae", action="store_true", help="train the style encoder (KL loss) too")
    g.add_argument("--z-dim", type=int, default=d.z_dim)


def _add_optimisation_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    g.add_argument("--max-steps", type=int, help=f"default: {DEFAULT_SYNTHETIC_STEPS} on synthetic data")
    g.add_argument("--epochs", type=int, help=f"epochs at constant lr (niter; default {DEFAULT_EPOCHS} on real data)")
    g.add_argument("--decay-epochs", type=int, default=d.decay_epochs, help="then linear decay to 0 (niter_decay)")
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--beta1", type=float, default=d.beta1)
    g.add_argument("--beta2", type=float, default=d.beta2)
    g.add_argument("--no-ttur", dest="ttur", action="store_false", help="same lr for G and D")
    g.add_argument("--lambda-feat", type=float, default=d.lambda_feat)
    g.add_argument("--lambda-vgg", type=float, default=d.lambda_vgg)
    g.add_argument("--lambda-kld", type=float, default=d.lambda_kld)
    g.add_argument("--no-feat-loss", action="store_true", help="drop the feature-matching loss")
    g.add_argument("--vgg-weights", help="torchvision VGG19 state dict; without it the perceptual loss is off")
    g.add_argument("--amp", choices=("off", "fp16", "bf16"), default=d.amp)
    g.add_argument("--channels-last", action="store_true")
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
    g.add_argument("--log-checksums", action="store_true", help="log every rank's weight checksum (DDP tests)")


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    """Parse ``argv`` into a :class:`TrainConfig` (dataset defaults not yet resolved)."""
    args = build_parser().parse_args(argv)
    values = vars(args)
    cfg = TrainConfig(**{k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}})
    for name in ("batch_size", "ngf", "ndf", "num_d", "save_every", "sample_every", "log_every", "keep", "z_dim"):
        if getattr(cfg, name) < 1:
            build_parser().error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    return cfg
