"""A 3-D SPADE decoder: label volume in, image volume out, every normalization modulated by the label map.

The decoder starts from the label volume downsampled by ``2**num_up`` (a 3x3x3 conv of it), then runs
``num_up`` stages of a SPADE residual block followed by a 2x nearest upsampling, and a final block and conv to one
channel. Each residual block is ``SPADE -> LeakyReLU -> conv``, twice, plus a learned shortcut when the width changes;
every SPADE is ``spadenorm.SPADE(spatial_dims=3)`` with instance statistics, so the label map re-enters at every
scale instead of being washed out by the normalizations (the SPADE paper's argument, in 3-D).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from spadenorm import SPADE


class SPADEResBlock3d(nn.Module):
    """Two SPADE-modulated 3x3x3 convs with a residual connection (learned 1x1x1 shortcut when widths differ)."""

    def __init__(self, in_channels: int, out_channels: int, label_nc: int, hidden_channels: int) -> None:
        super().__init__()
        middle = min(in_channels, out_channels)
        self.norm_0 = SPADE(in_channels, label_nc, spatial_dims=3, hidden_channels=hidden_channels)
        self.conv_0 = nn.Conv3d(in_channels, middle, 3, padding=1)
        self.norm_1 = SPADE(middle, label_nc, spatial_dims=3, hidden_channels=hidden_channels)
        self.conv_1 = nn.Conv3d(middle, out_channels, 3, padding=1)
        self.shortcut = None if in_channels == out_channels else nn.Conv3d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor, segmap: Tensor) -> Tensor:
        h = self.conv_0(F.leaky_relu(self.norm_0(x, segmap), 0.2))
        h = self.conv_1(F.leaky_relu(self.norm_1(h, segmap), 0.2))
        return (x if self.shortcut is None else self.shortcut(x)) + h


class VolumeDecoder(nn.Module):
    """Label volume (N, D, H, W) of class ids -> image volume (N, 1, D, H, W) in [-1, 1].

    Args:
        label_nc: number of classes.
        width: channels of the first stage; each upsampling stage halves them (at least 8).
        num_up: upsampling stages; D, H and W must be divisible by ``2**num_up``.
        hidden_channels: width of every SPADE's shared embedding.

    Example:
        >>> import torch
        >>> net = VolumeDecoder(label_nc=6, width=16, num_up=2, hidden_channels=8)
        >>> net(torch.randint(0, 6, (1, 8, 16, 16))).shape
        torch.Size([1, 1, 8, 16, 16])
    """

    def __init__(self, label_nc: int, width: int = 32, num_up: int = 2, hidden_channels: int = 32) -> None:
        super().__init__()
        self.label_nc, self.num_up = label_nc, num_up
        widths = [max(8, width // 2**i) for i in range(num_up + 1)]
        self.head = nn.Conv3d(label_nc, widths[0], 3, padding=1)
        self.blocks = nn.ModuleList(
            SPADEResBlock3d(widths[i], widths[i + 1], label_nc, hidden_channels) for i in range(num_up)
        )
        self.final = SPADEResBlock3d(widths[-1], widths[-1], label_nc, hidden_channels)
        self.to_image = nn.Conv3d(widths[-1], 1, 3, padding=1)

    def forward(self, labels: Tensor) -> Tensor:
        """Decode integer class ids (N, D, H, W) into an image volume."""
        factor = 2**self.num_up
        if any(size % factor for size in labels.shape[1:]):
            raise ValueError(f"labels' D, H and W must be divisible by {factor}, got {tuple(labels.shape[1:])}")
        one_hot = F.one_hot(labels, self.label_nc).movedim(-1, 1).float()
        h = self.head(F.avg_pool3d(one_hot, factor))
        for block in self.blocks:
            h = F.interpolate(block(h, labels), scale_factor=2, mode="nearest")
        h = self.final(h, labels)
        return self.to_image(F.leaky_relu(h, 0.2)).tanh()
