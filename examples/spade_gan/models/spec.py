"""The architecture of the generator and its style encoder: the one description training and synthesis build from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from spadenorm.functional import NormName

from .baselines import BASELINES, Pix2PixHDGenerator, baseline_output_size, matched_width, parameter_count
from .encoder import ConvEncoder
from .generator import SPADEGenerator, Upsampling

GeneratorKind = Literal["spade", "clade", "pix2pixhd", "concat"]
GENERATORS: tuple[GeneratorKind, ...] = ("spade", "clade", "pix2pixhd", "concat")
"""The generators a spec can describe: SPADE, SPADE with CLADE layers, and the two pix2pixHD baselines (the label
map at the input only, or concatenated to every block's input) sized to the SPADE generator's parameter count."""

Generator = SPADEGenerator | Pix2PixHDGenerator

BASELINE_DOWNSAMPLING = 3
"""Stride-2 stages of the pix2pixHD baselines (64 px: 8x8 at the bottom)."""


@dataclass(frozen=True)
class ModelSpec:
    r"""What the generator (and, with ``use_vae``, its style encoder) looks like and what its input holds.

    The semantic input has

    .. math::

        \mathrm{semantic\_nc} = \mathrm{label\_nc} + [\mathrm{contain\_dontcare}] + [\mathrm{use\_instance}]

    channels: the one-hot label ids, the dontcare channel where id 255 marks "don't care", and the instance-edge
    channel where instance maps are used. The output is ``(round(crop_size / aspect_ratio), crop_size)`` pixels
    (see :class:`~spade_gan.models.generator.SPADEGenerator` for the other fields).

    ``generator`` picks the network: ``"spade"``; ``"clade"`` (the same generator with
    :class:`spadenorm.CLADE` layers, which needs a map without instance edges); ``"pix2pixhd"`` and ``"concat"``, the
    baselines of :mod:`spade_gan.models.baselines` (no VAE) with ``norm`` ``"instance"`` or a batch norm, their width
    chosen by :meth:`matched_baseline_width` so that they have as many parameters as the SPADE generator of this spec
    (``ngf`` is the SPADE width they are matched to) unless ``baseline_width`` fixes it (training checkpoints record
    it).

    Training gets its spec from :meth:`spade_gan.training.config.TrainConfig.model_spec`; synthesis from a training
    checkpoint's configuration or, for the original implementation's files, from
    :func:`spade_gan.synthesis.original_weights.spec_from_original`.

    Example:
        >>> spec = ModelSpec(label_nc=8, contain_dontcare=False, use_instance=False, ngf=4, crop_size=64)
        >>> spec.semantic_nc, spec.build_generator().output_size, spec.build_encoder()
        (8, (64, 64), None)
    """

    label_nc: int
    contain_dontcare: bool
    use_instance: bool
    ngf: int = 64
    num_upsampling_layers: Upsampling = "normal"
    crop_size: int = 256
    aspect_ratio: float = 1.0
    use_vae: bool = False
    z_dim: int = 256
    norm: NormName = "sync_batch"
    spectral: bool = True
    spade_hidden: int = 128
    generator: GeneratorKind = "spade"
    baseline_width: int | None = None

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise ValueError(f"generator must be one of {GENERATORS}, got {self.generator!r}")
        if self.generator == "clade" and self.use_instance:
            raise ValueError(
                "generator='clade' looks classes up from a one-hot map; it cannot use instance edges (use_instance)"
            )
        if self.generator in BASELINES:
            if self.use_vae:
                raise ValueError(f"generator={self.generator!r} has no style input; it cannot be trained with use_vae")
            if self.norm not in ("instance", "batch", "sync_batch"):
                raise ValueError(
                    f"generator={self.generator!r} takes norm 'instance', 'batch' or 'sync_batch', got {self.norm!r}"
                )
            baseline_output_size(self.crop_size, self.aspect_ratio, BASELINE_DOWNSAMPLING)

    @property
    def semantic_nc(self) -> int:
        """Channels of the generator's semantic input."""
        return self.label_nc + int(self.contain_dontcare) + int(self.use_instance)

    def build_generator(self) -> Generator:
        """A freshly initialised generator of this architecture (the global RNG draws its weights)."""
        if self.generator in BASELINES:
            return self._baseline(self.baseline_width or self.matched_baseline_width())
        return self.spade_generator(clade=self.generator == "clade")

    def spade_generator(self, *, clade: bool = False) -> SPADEGenerator:
        """The SPADE generator of this spec (CLADE layers with ``clade``), whatever ``generator`` says: what the
        original checkpoints hold and what the baselines are sized against."""
        return SPADEGenerator(
            self.semantic_nc,
            ngf=self.ngf,
            num_upsampling_layers=self.num_upsampling_layers,
            crop_size=self.crop_size,
            aspect_ratio=self.aspect_ratio,
            use_vae=self.use_vae,
            z_dim=self.z_dim,
            norm=self.norm,
            spectral=self.spectral,
            spade_hidden=self.spade_hidden,
            modulation="clade" if clade else "spade",
        )

    def _baseline(self, width: int) -> Pix2PixHDGenerator:
        return Pix2PixHDGenerator(
            self.semantic_nc,
            ngf=width,
            n_downsampling=BASELINE_DOWNSAMPLING,
            crop_size=self.crop_size,
            aspect_ratio=self.aspect_ratio,
            norm="instance" if self.norm == "instance" else "batch",
            concat_mask=self.generator == "concat",
        )

    def matched_baseline_width(self) -> int:
        """The pix2pixHD width whose parameter count is closest to the SPADE generator's at ``ngf`` (for
        ``generator`` ``"pix2pixhd"`` or ``"concat"``); training records it as ``baseline_width``."""
        target = parameter_count(_on_meta(self.spade_generator))
        return matched_width(self._baseline, target)

    def build_encoder(self) -> ConvEncoder | None:
        """A freshly initialised style encoder with ``use_vae``; ``None`` without (the generator starts from the
        mask)."""
        if not self.use_vae:
            return None
        return ConvEncoder(self.crop_size, ngf=self.ngf, z_dim=self.z_dim)


def _on_meta(build: Callable[[], Generator]) -> Generator:
    """``build()`` on the meta device: shapes and parameter counts without memory or initialisation cost."""
    with torch.device("meta"):
        return build()
