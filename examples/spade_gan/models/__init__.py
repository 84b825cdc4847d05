"""The reference GAN's networks and their architecture, in one namespace: ``from spade_gan import models``.

* ``generator``: :class:`SPADEGenerator`, SPADE residual blocks (``block``: :class:`SPADEResnetBlock`) with nearest
  upsampling;
* ``encoder``: :class:`ConvEncoder`, the VAE's style encoder;
* ``discriminator``: :class:`MultiscaleDiscriminator` of :class:`NLayerDiscriminator` PatchGANs;
* ``baselines``: the pix2pixHD generators of the ablation (the label map at the input only, or at every block);
* ``vgg``: the VGG19 features of the perceptual loss;
* ``layers``: the initialisation and the normed convs the networks share;
* ``spec``: :class:`ModelSpec`, the generator's and encoder's architecture, which training and synthesis build from.

Imports spadenorm and torch only, nothing else of ``spade_gan``.
"""

from __future__ import annotations

from .baselines import Pix2PixHDGenerator
from .block import SPADEResnetBlock
from .discriminator import MultiscaleDiscriminator, NLayerDiscriminator
from .encoder import ConvEncoder, reparameterize
from .generator import NUM_UPSAMPLINGS, SPADEGenerator
from .layers import init_weights
from .spec import GENERATORS, ModelSpec
from .vgg import VGG19Features

__all__ = [
    "GENERATORS",
    "NUM_UPSAMPLINGS",
    "ConvEncoder",
    "ModelSpec",
    "MultiscaleDiscriminator",
    "NLayerDiscriminator",
    "Pix2PixHDGenerator",
    "SPADEGenerator",
    "SPADEResnetBlock",
    "VGG19Features",
    "init_weights",
    "reparameterize",
]
