"""The multi-scale PatchGAN discriminator of pix2pixHD, as used by SPADE, returning features for feature matching."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import LEAKY_SLOPE, check_image_batch, check_positive_int, init_weights, spectral_instance_conv

KERNEL_SIZE = 4
PADDING = 2
MAX_WIDTH = 512


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator: a map of real/fake scores, one per overlapping patch, and every intermediate feature.

    ``model0``: ``Conv2d(input_nc, ndf, 4, stride 2, padding 2)`` with bias, no norm, leaky ReLU 0.2;
    ``model1`` .. ``model{n_layers_D - 1}``: spectral-normed 4x4 convs without bias followed by
    ``InstanceNorm2d(affine=False)`` and leaky ReLU, widths doubling up to 512, stride 2 except the last (stride 1);
    ``model{n_layers_D}``: ``Conv2d(width, 1, 4, stride 1, padding 2)`` with bias, no norm. Each 4x4 conv with
    padding 2 maps a side of length L to ``L // stride + 1``.

    Args:
        input_nc: channels of the input, the semantic map and the image concatenated (semantic_nc + 3).
        ndf: width of the first conv.
        n_layers_D: number of convs before the final one.

    Shape:
        - x: (N, input_nc, H, W)
        - output: list of n_layers_D + 1 feature maps; the last, (N, 1, h, w), holds the scores

    Example:
        >>> import torch
        >>> feats = NLayerDiscriminator(6, ndf=8)(torch.randn(1, 6, 32, 32))
        >>> [tuple(f.shape) for f in feats]
        [(1, 8, 17, 17), (1, 16, 9, 9), (1, 32, 5, 5), (1, 64, 6, 6), (1, 1, 7, 7)]
    """

    def __init__(self, input_nc: int, *, ndf: int = 64, n_layers_D: int = 4) -> None:
        super().__init__()
        check_positive_int(input_nc, "input_nc")
        check_positive_int(ndf, "ndf")
        check_positive_int(n_layers_D, "n_layers_D")
        self.input_nc = input_nc
        self.n_layers_D = n_layers_D
        self.model0 = nn.Sequential(
            nn.Conv2d(input_nc, ndf, KERNEL_SIZE, stride=2, padding=PADDING), nn.LeakyReLU(LEAKY_SLOPE)
        )
        width = ndf
        for n in range(1, n_layers_D):
            previous, width = width, min(2 * width, MAX_WIDTH)
            stride = 1 if n == n_layers_D - 1 else 2
            conv = spectral_instance_conv(previous, width, KERNEL_SIZE, stride=stride, padding=PADDING)
            self.add_module(f"model{n}", nn.Sequential(conv, nn.LeakyReLU(LEAKY_SLOPE)))
        final = nn.Conv2d(width, 1, KERNEL_SIZE, stride=1, padding=PADDING)
        self.add_module(f"model{n_layers_D}", nn.Sequential(final))
        self.apply(init_weights)

    def forward(self, x: Tensor) -> list[Tensor]:
        check_image_batch(x, "x", channels=self.input_nc, channels_name="input_nc")
        features = []
        for i in range(self.n_layers_D + 1):
            x = getattr(self, f"model{i}")(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    """``num_D`` :class:`NLayerDiscriminator` s on the input downsampled 1x, 2x, 4x, ...

    Between scales the input is average-pooled with kernel 3, stride 2, padding 1 and ``count_include_pad=False``.
    Submodules are ``discriminator_0`` (full resolution) .. ``discriminator_{num_D - 1}``.

    Args:
        input_nc: channels of the input, the semantic map and the image concatenated (semantic_nc + 3).
        ndf: width of each discriminator's first conv.
        n_layers_D: convs per discriminator before the final one.
        num_D: number of scales.

    Shape:
        - x: (N, input_nc, H, W)
        - output: a list of num_D lists (one per scale, finest first) of n_layers_D + 1 feature maps, the last of
          each being that scale's (N, 1, h, w) score map

    Example:
        >>> import torch
        >>> out = MultiscaleDiscriminator(6, ndf=8)(torch.randn(1, 6, 32, 32))
        >>> len(out), len(out[0]), tuple(out[1][-1].shape)
        (2, 5, (1, 1, 5, 5))
    """

    def __init__(self, input_nc: int, *, ndf: int = 64, n_layers_D: int = 4, num_D: int = 2) -> None:
        super().__init__()
        check_positive_int(num_D, "num_D")
        self.num_D = num_D
        for i in range(num_D):
            self.add_module(f"discriminator_{i}", NLayerDiscriminator(input_nc, ndf=ndf, n_layers_D=n_layers_D))

    @staticmethod
    def downsample(x: Tensor) -> Tensor:
        """Average pool 3x3, stride 2, padding 1, border windows averaged over their in-image pixels only."""
        return F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        results = []
        for i in range(self.num_D):
            if i > 0:
                x = self.downsample(x)
            results.append(getattr(self, f"discriminator_{i}")(x))
        return results
