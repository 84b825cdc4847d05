"""Building blocks shared by the generator, the encoder and the discriminator: initialisation and normed convs."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils import spectral_norm

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
    weight = getattr(module, "weight_orig", None)  # the parameter behind a spectral-normed weight
    if not isinstance(weight, Tensor):
        weight = module.weight
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
    """``value`` if it is an int >= 1: ``TypeError`` for a non-int (bools included), ``ValueError`` for one < 1.

    Example:
        >>> check_positive_int(0, "ngf")
        Traceback (most recent call last):
            ...
        ValueError: ngf must be a positive int, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_image_batch(x: object, name: str, *, channels: int = 3, channels_name: str = "") -> None:
    """``x`` is a tensor of shape (N, ``channels``, H, W): ``TypeError`` for a non-tensor, ``ValueError`` for another
    shape; ``channels_name`` names the channel count in the message (e.g. ``input_nc``).

    Example:
        >>> import torch
        >>> check_image_batch(torch.zeros(2, 4, 8, 8), "x")
        Traceback (most recent call last):
            ...
        ValueError: x must be an image batch of shape (N, 3, H, W), got (2, 4, 8, 8)
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != channels:
        expected = f"{channels_name}={channels}" if channels_name else str(channels)
        raise ValueError(f"{name} must be an image batch of shape (N, {expected}, H, W), got {tuple(x.shape)}")
