"""Building blocks shared by the generator, the encoder and the discriminator: initialisation and normed convs."""

from __future__ import annotations

from typing import Literal

from torch import nn
from torch.nn.utils import spectral_norm

NormName = Literal["instance", "batch", "sync_batch", "group", "layer", "none"]
"""Parameter-free norms accepted by :class:`spadenorm.SPADE`."""

LEAKY_SLOPE = 0.2
"""Negative slope of every leaky ReLU in the GAN."""

INIT_GAIN = 0.02
"""Gain of the Xavier-normal initialisation of every conv and linear weight."""


def init_weights(module: nn.Module, gain: float = INIT_GAIN) -> None:
    r"""Xavier-normal initialisation with ``gain`` of one conv or linear layer's weight, zero bias.

    :math:`W \sim \mathcal{N}(0, \sigma^2)`, :math:`\sigma = \text{gain} \sqrt{2 / (\text{fan\_in} + \text{fan\_out})}`.
    A spectral-normed layer is initialised through ``weight_orig`` (its ``weight`` is recomputed from it on every
    forward). Other modules are left alone, so use it with :meth:`torch.nn.Module.apply`.

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Linear(8, 2))
        >>> _ = net.apply(init_weights)
        >>> bool(net[2].bias.eq(0).all())
        True
    """
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        return
    weight = module.weight_orig if hasattr(module, "weight_orig") else module.weight
    nn.init.xavier_normal_(weight, gain=gain)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def maybe_spectral(module: nn.Conv2d, spectral: bool) -> nn.Conv2d:
    """``torch.nn.utils.spectral_norm(module)`` (keys ``weight_orig``, ``weight_u``, ``weight_v``) when ``spectral``."""
    return spectral_norm(module) if spectral else module


def spectral_instance_conv(
    in_channels: int, out_channels: int, kernel_size: int, *, stride: int, padding: int
) -> nn.Sequential:
    """Spectral-normed conv (no bias) followed by ``InstanceNorm2d(affine=False)``: keys ``0.weight_orig/_u/_v``.

    The conv has no bias: a per-channel constant is removed by the instance norm right after it.
    """
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
    return nn.Sequential(spectral_norm(conv), nn.InstanceNorm2d(out_channels, affine=False))


def check_positive_int(value: object, name: str) -> int:
    """``value`` is an int >= 1 (bools rejected), else ``ValueError`` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value
