"""The SPADE GAN's networks in one namespace: ``from spade_gan import models``.

Each network lives in its own module (``block``, ``generator``, ``encoder``, ``discriminator``); ``model_spec``
describes the generator's architecture; ``original_weights`` loads the original implementation's generator weights.
"""

from __future__ import annotations

from .block import SPADEResnetBlock
from .discriminator import MultiscaleDiscriminator, NLayerDiscriminator
from .encoder import ConvEncoder, reparameterize
from .generator import NUM_UPSAMPLINGS, SPADEGenerator
from .layers import init_weights
from .model_spec import ModelSpec
from .original_weights import load_original_generator, load_state_dict_file

__all__ = [
    "NUM_UPSAMPLINGS",
    "ConvEncoder",
    "ModelSpec",
    "MultiscaleDiscriminator",
    "NLayerDiscriminator",
    "SPADEGenerator",
    "SPADEResnetBlock",
    "init_weights",
    "load_original_generator",
    "load_state_dict_file",
    "reparameterize",
]
