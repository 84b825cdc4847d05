"""The SPADE residual block: two SPADE-normed 3x3 convs and a (possibly learned) shortcut."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from spadenorm import CLADE, SPADE
from spadenorm.functional import NormName

from .layers import LEAKY_SLOPE, check_positive_int, maybe_spectral

Modulation = Literal["spade", "clade"]
MODULATIONS: tuple[Modulation, ...] = ("spade", "clade")


class SPADEResnetBlock(nn.Module):
    r"""Residual block with SPADE normalization (Park et al. 2019, Fig. 4).

    .. math::

        x_s &= \begin{cases} \mathrm{conv_s}(\mathrm{norm_s}(x, m)) & f_{in} \ne f_{out} \\ x & \text{otherwise}
               \end{cases} \\
        d &= \mathrm{conv_1}(\mathrm{lrelu}(\mathrm{norm_1}(\mathrm{conv_0}(\mathrm{lrelu}(\mathrm{norm_0}(x, m))), m)))
        \\
        y &= x_s + d

    with leaky ReLU slope 0.2, ``conv_0``: fin -> fmiddle, ``conv_1``: fmiddle -> fout (3x3, bias), ``conv_s``:
    fin -> fout (1x1, no bias, no activation before it), ``fmiddle = min(fin, fout)``, and every ``norm_*`` a
    :class:`spadenorm.SPADE` conditioned on the segmentation map m (with ``modulation="clade"`` a
    :class:`spadenorm.CLADE`, whose per-class tables replace SPADE's convolutions). Submodule names and, with
    ``spectral=True``, the spectral-norm keys (``weight_orig``, ``weight_u``, ``weight_v``) follow the original
    implementation.

    Args:
        fin: input channels.
        fout: output channels; a learned shortcut is used when ``fin != fout``.
        label_nc: channels of the segmentation map.
        norm: parameter-free norm inside the SPADE layers (``"sync_batch"`` in the original).
        kernel_size: kernel size of the SPADE layers' convs (the block's own convs are always 3x3 and 1x1).
        spectral: spectral normalization on ``conv_0``, ``conv_1`` and ``conv_s``.
        hidden_channels: width of the SPADE layers' shared convolution (128 in the original).
        modulation: ``"spade"`` (convolutions of the map) or ``"clade"`` (a table row per class).

    Shape:
        - x: (N, fin, H, W)
        - seg: integer class ids (N, h, w) in [0, label_nc - E), or with ``"spade"`` a float (N, label_nc, h, w)
          map; resized to (H, W) inside each layer
        - extra (optional, ``"spade"`` with ids only): float (N, E, h, w), the map's channels after the classes
          (the instance-edge channel), passed to the SPADE layers beside the ids
        - output: (N, fout, H, W)

    Example:
        >>> import torch
        >>> block = SPADEResnetBlock(16, 8, label_nc=5, norm="instance")
        >>> block(torch.randn(2, 16, 8, 8), torch.rand(2, 5, 32, 32)).shape
        torch.Size([2, 8, 8, 8])
    """

    def __init__(
        self,
        fin: int,
        fout: int,
        label_nc: int,
        *,
        norm: NormName = "sync_batch",
        kernel_size: int = 3,
        spectral: bool = True,
        hidden_channels: int = 128,
        modulation: Modulation = "spade",
    ) -> None:
        super().__init__()
        if modulation not in MODULATIONS:
            raise ValueError(f"modulation must be one of {MODULATIONS}, got {modulation!r}")
        check_positive_int(fin, "fin")
        check_positive_int(fout, "fout")
        self.fin, self.fout = fin, fout
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = maybe_spectral(nn.Conv2d(fin, fmiddle, 3, padding=1), spectral)
        self.conv_1 = maybe_spectral(nn.Conv2d(fmiddle, fout, 3, padding=1), spectral)

        def modulated_norm(channels: int) -> nn.Module:
            if modulation == "clade":
                return CLADE(channels, label_nc, norm=norm)
            return SPADE(channels, label_nc, norm=norm, kernel_size=kernel_size, hidden_channels=hidden_channels)

        self.norm_0 = modulated_norm(fin)
        self.norm_1 = modulated_norm(fmiddle)
        if self.learned_shortcut:
            self.conv_s = maybe_spectral(nn.Conv2d(fin, fout, 1, bias=False), spectral)
            self.norm_s = modulated_norm(fin)

    def shortcut(self, x: Tensor, seg: Tensor, extra: Tensor | None = None) -> Tensor:
        return self.conv_s(_norm(self.norm_s, x, seg, extra)) if self.learned_shortcut else x

    def forward(self, x: Tensor, seg: Tensor, extra: Tensor | None = None) -> Tensor:
        dx = self.conv_0(F.leaky_relu(_norm(self.norm_0, x, seg, extra), LEAKY_SLOPE))
        dx = self.conv_1(F.leaky_relu(_norm(self.norm_1, dx, seg, extra), LEAKY_SLOPE))
        return self.shortcut(x, seg, extra) + dx

    def extra_repr(self) -> str:
        return f"{self.fin}, {self.fout}, learned_shortcut={self.learned_shortcut}"


def _norm(layer: nn.Module, x: Tensor, seg: Tensor, extra: Tensor | None) -> Tensor:
    """``layer(x, seg)``, with the map's extra channels beside integer ids where there are any (SPADE only)."""
    return layer(x, seg) if extra is None else layer(x, seg, extra=extra)
