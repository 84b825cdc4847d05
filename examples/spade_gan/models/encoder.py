"""The VAE image encoder: an image to the mean and log-variance of its style code z."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import LEAKY_SLOPE, check_image_batch, check_positive_int, init_weights, spectral_instance_conv

ENCODER_INPUT_SIZE = 256
"""Images are resized (bilinear) to this square size before the encoder's convs."""


class ConvEncoder(nn.Module):
    r"""Image encoder of the SPADE VAE: :math:`x \mapsto (\mu, \log\sigma^2)` of :math:`q(z \mid x)`.

    The image is resized to 256x256, then goes through stride-2 3x3 convs (padding 1) with widths
    ngf, 2ngf, 4ngf, 8ngf, 8ngf and, when ``crop_size >= 256``, a sixth of width 8ngf; each is a spectral-normed conv
    without bias followed by ``InstanceNorm2d(affine=False)`` and a leaky ReLU (0.2). The (N, 8ngf, s, s) result,
    s = 4 (s = 8 with five convs), is flattened into ``fc_mu`` and ``fc_var``: ``Linear(8ngf * s * s, z_dim)``.
    Submodules are ``layer1`` .. ``layer6`` (each ``0``: conv, ``1``: norm), ``fc_mu`` and ``fc_var``.

    With five convs the original sizes its linear layers for s = 4 and then fails on the 8x8 map; here they are sized
    for the map they get. At ``crop_size >= 256`` the layout, and so the checkpoints, are the original's.

    Args:
        crop_size: the training crop size; decides whether the sixth conv exists.
        ngf: base width.
        z_dim: length of z.

    Shape:
        - x: (N, 3, H, W), any H, W (resized to 256x256)
        - output: mu and logvar, each (N, z_dim)

    Example:
        >>> import torch
        >>> mu, logvar = ConvEncoder(ngf=4, z_dim=8)(torch.randn(2, 3, 64, 64))
        >>> mu.shape, logvar.shape
        (torch.Size([2, 8]), torch.Size([2, 8]))
    """

    def __init__(self, crop_size: int = 256, ngf: int = 64, z_dim: int = 256) -> None:
        super().__init__()
        check_positive_int(crop_size, "crop_size")
        check_positive_int(ngf, "ngf")
        check_positive_int(z_dim, "z_dim")
        self.z_dim = z_dim
        widths = [3, ngf, 2 * ngf, 4 * ngf, 8 * ngf, 8 * ngf]
        if crop_size >= ENCODER_INPUT_SIZE:
            widths.append(8 * ngf)
        self.num_layers = len(widths) - 1
        for i, (cin, cout) in enumerate(itertools.pairwise(widths), start=1):
            self.add_module(f"layer{i}", spectral_instance_conv(cin, cout, 3, stride=2, padding=1))
        s = ENCODER_INPUT_SIZE // 2**self.num_layers
        self.fc_mu = nn.Linear(8 * ngf * s * s, z_dim)
        self.fc_var = nn.Linear(8 * ngf * s * s, z_dim)
        self.apply(init_weights)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image_batch(x, "x")
        if x.shape[2:] != (ENCODER_INPUT_SIZE, ENCODER_INPUT_SIZE):
            x = F.interpolate(x, size=(ENCODER_INPUT_SIZE, ENCODER_INPUT_SIZE), mode="bilinear", align_corners=False)
        for i in range(1, self.num_layers + 1):
            x = F.leaky_relu(getattr(self, f"layer{i}")(x), LEAKY_SLOPE)
        x = x.flatten(1)
        return self.fc_mu(x), self.fc_var(x)


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r"""A sample :math:`z = \mu + \epsilon \odot \exp(\log\sigma^2 / 2)`, :math:`\epsilon \sim \mathcal{N}(0, I)`.

    Differentiable in mu and logvar (the reparameterization trick). ``generator`` seeds epsilon.

    Example:
        >>> import torch
        >>> reparameterize(torch.zeros(2, 3), torch.full((2, 3), -1e4)).abs().max().item()
        0.0
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + eps * torch.exp(0.5 * logvar)
