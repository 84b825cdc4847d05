"""The architecture of the generator and its style encoder: the one description training and synthesis build from."""

from __future__ import annotations

from dataclasses import dataclass

from spadenorm.functional import NormName

from .encoder import ConvEncoder
from .generator import SPADEGenerator, Upsampling


@dataclass(frozen=True)
class ModelSpec:
    r"""What the generator (and, with ``use_vae``, its style encoder) looks like and what its input holds.

    The semantic input has

    .. math::

        \mathrm{semantic\_nc} = \mathrm{label\_nc} + [\mathrm{contain\_dontcare}] + [\mathrm{use\_instance}]

    channels: the one-hot label ids, the dontcare channel where id 255 marks "don't care", and the instance-edge
    channel where instance maps are used. The output is ``(round(crop_size / aspect_ratio), crop_size)`` pixels
    (see :class:`~spade_gan.generator.SPADEGenerator` for the other fields). Training gets its spec from
    :meth:`spade_gan.config.TrainConfig.model_spec`; synthesis from a training checkpoint's configuration or, for the
    original implementation's files, from :func:`spade_gan.original_weights.spec_from_original`.

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

    @property
    def semantic_nc(self) -> int:
        """Channels of the generator's semantic input."""
        return self.label_nc + int(self.contain_dontcare) + int(self.use_instance)

    def build_generator(self) -> SPADEGenerator:
        """A freshly initialised generator of this architecture (the global RNG draws its weights)."""
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
        )

    def build_encoder(self) -> ConvEncoder | None:
        """A freshly initialised style encoder with ``use_vae``; ``None`` without (the generator starts from the
        mask)."""
        if not self.use_vae:
            return None
        return ConvEncoder(self.crop_size, ngf=self.ngf, z_dim=self.z_dim)
