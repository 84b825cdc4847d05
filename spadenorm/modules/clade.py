"""CLADE: class-adaptive normalization (Tan et al. 2020), SPADE's modulation from per-class tables."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _validation
from .._core import NormName
from ..functional import _class_modulated
from .param_free import ParamFreeNorm


class CLADE(nn.Module):
    r"""Class-adaptive normalization: :math:`y = \mathrm{norm}(x) \odot \gamma[l] + \beta[l]`.

    ``gamma_table`` and ``beta_table`` (num_classes, C) hold one scale and shift row per class; the label map l picks a
    row per pixel. SPADE's modulation networks are replaced by a lookup, which makes the layer far cheaper.

    Args:
        num_features: C.
        num_classes: number of classes in the label maps.
        norm: statistics of the parameter-free norm, as in :class:`spadenorm.SPADE`.
        eps: variance epsilon of the norm.
        momentum: running-statistics momentum for batch norms (``None``: cumulative average).
        num_groups: groups for ``norm="group"``.

    Shape:
        - x: (N, C, \*spatial) with 1 to 3 spatial dimensions; output: the same, in x's memory format.
        - labels: integer (N, \*spatial') or (N, 1, \*spatial') with x's spatial rank, ids in [0, num_classes),
          resized to x's size with nearest-neighbour sampling.

    Example:
        >>> import torch
        >>> from spadenorm import CLADE
        >>> layer = CLADE(32, num_classes=5)
        >>> layer(torch.randn(2, 32, 16, 16), torch.randint(0, 5, (2, 64, 64))).shape
        torch.Size([2, 32, 16, 16])
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        *,
        norm: NormName = "instance",
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        num_groups: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _validation.check_positive_int(num_classes, "num_classes")
        self.num_classes = num_classes
        self.param_free_norm = ParamFreeNorm(
            num_features, norm, eps=eps, momentum=momentum, num_groups=num_groups, device=device, dtype=dtype
        )
        self.gamma_table = nn.Parameter(torch.empty(num_classes, num_features, device=device, dtype=dtype))
        self.beta_table = nn.Parameter(torch.empty(num_classes, num_features, device=device, dtype=dtype))
        self.reset_parameters()

    @property
    def num_features(self) -> int:
        return self.param_free_norm.num_features

    def reset_parameters(self) -> None:
        """Scales 1, shifts 0: a fresh layer is the plain norm."""
        nn.init.ones_(self.gamma_table)
        nn.init.zeros_(self.beta_table)
        self.param_free_norm.reset_running_stats()

    def forward(self, x: Tensor, labels: Tensor, scale: Tensor | None = None, shift: Tensor | None = None) -> Tensor:
        """Normalize x (N, C, \\*spatial), modulate it with the table rows of integer ``labels`` (N, \\*spatial'),
        then by ``1 + scale`` and ``shift`` (per (n, c) or per channel, optional)."""
        norm = self.param_free_norm
        x = norm.check_input(x)
        scale = _validation.check_scale_shift(scale, x, "scale")
        shift = _validation.check_scale_shift(shift, x, "shift")
        return _class_modulated(
            x, labels, self.gamma_table, self.beta_table, scale, shift, norm.spec, norm.running, self.training
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_classes={self.num_classes}"
