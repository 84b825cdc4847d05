"""SPADE: spatially-adaptive normalization (Park et al., CVPR 2019)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _validation
from .._core import NormName
from ..functional import resize_labels
from ..migration import parse_spade_config
from .param_free import ParamFreeNorm

INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")


class SPADE(nn.Module):
    r"""Spatially-adaptive normalization: :math:`y = \mathrm{norm}(x) \odot (1 + \gamma(m)) + \beta(m)`.

    :math:`\gamma(m), \beta(m)` are (N, C, H, W) maps predicted from the segmentation map m, resized to x's size, by
    a shared ``kernel_size`` conv with ReLU into ``hidden_channels`` channels, then one conv each for gamma and
    beta. Submodule and buffer names follow the original layer (``param_free_norm``, ``mlp_shared.0``,
    ``mlp_gamma``, ``mlp_beta``), so its state dicts load with ``strict=True``.

    Args:
        num_features: C, channels of x.
        label_nc: channels of the segmentation map (classes, plus any extra channels such as an instance edge map).
        norm: statistics of the parameter-free norm: ``"instance"``, ``"batch"``, ``"sync_batch"`` (synchronized
            across processes when ``torch.distributed`` is initialized and the module is training; set
            ``layer.param_free_norm.process_group`` to reduce over a group other than the default), ``"group"``,
            ``"layer"`` or ``"none"``.
        hidden_channels: width of the shared embedding (128 in the paper).
        kernel_size: odd kernel size of the three convs (padding ``kernel_size // 2``).
        eps: variance epsilon of the norm.
        momentum: running-statistics momentum for batch norms (``None``: cumulative average).
        num_groups: groups for ``norm="group"``.
        interpolation: ``F.interpolate`` mode used to resize a float segmap (``"nearest"`` as in the paper).

    Shape:
        - x: (N, C, H, W) (the convolutions are 2-D)
        - segmap: float (N, label_nc, h, w) (one-hot or soft), or integer class ids (N, h, w) / (N, 1, h, w) with
          ids in [0, label_nc), one-hot encoded inside
        - output: (N, C, H, W) in x's memory format

    Example:
        >>> import torch
        >>> from spadenorm import SPADE
        >>> layer = SPADE(64, label_nc=10)
        >>> x = torch.randn(2, 64, 32, 32)
        >>> labels = torch.randint(0, 10, (2, 256, 256))
        >>> layer(x, labels).shape
        torch.Size([2, 64, 32, 32])
    """

    def __init__(
        self,
        num_features: int,
        label_nc: int,
        *,
        norm: NormName = "instance",
        hidden_channels: int = 128,
        kernel_size: int = 3,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        num_groups: int | None = None,
        interpolation: str = "nearest",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _validation.check_positive_int(label_nc, "label_nc")
        _validation.check_positive_int(hidden_channels, "hidden_channels")
        if _validation.check_positive_int(kernel_size, "kernel_size") % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int (the output keeps x's size), got {kernel_size}")
        if not isinstance(interpolation, str):
            raise TypeError(f"interpolation must be a str, one of {INTERPOLATIONS}, got {type(interpolation).__name__}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.label_nc = label_nc
        self.interpolation = interpolation
        self.param_free_norm = ParamFreeNorm(
            num_features, norm, eps=eps, momentum=momentum, num_groups=num_groups, **factory
        )
        padding = kernel_size // 2
        self.mlp_shared = nn.Sequential(
            nn.Conv2d(label_nc, hidden_channels, kernel_size, padding=padding, **factory), nn.ReLU()
        )
        self.mlp_gamma = nn.Conv2d(hidden_channels, num_features, kernel_size, padding=padding, **factory)
        self.mlp_beta = nn.Conv2d(hidden_channels, num_features, kernel_size, padding=padding, **factory)

    @classmethod
    def from_config(cls, config: str, num_features: int, label_nc: int, **kwargs: Any) -> SPADE:
        """Build the layer the original code builds from ``config`` (e.g. ``"spadesyncbatch3x3"``).

        Example:
            >>> SPADE.from_config("spadesyncbatch3x3", 256, 36).param_free_norm.norm
            'sync_batch'
        """
        parsed = parse_spade_config(config)
        return cls(num_features, label_nc, norm=parsed.norm, kernel_size=parsed.kernel_size, **kwargs)

    @property
    def num_features(self) -> int:
        return self.param_free_norm.num_features

    def prepare_segmap(self, segmap: Tensor, x: Tensor) -> Tensor:
        """Validate ``segmap`` against x and return it as a float (N, label_nc, H, W) map at x's size."""
        dtype = self.mlp_gamma.weight.dtype
        size = tuple(x.shape[2:])
        if not isinstance(segmap, Tensor):
            raise TypeError(f"segmap must be a torch.Tensor, got {type(segmap).__name__}")
        if not segmap.is_floating_point():
            labels = _validation.check_label_map(segmap, self.label_nc, x, "segmap")
            if self.interpolation == "nearest":
                return F.one_hot(resize_labels(labels, size), self.label_nc).movedim(-1, 1).to(dtype)
            segmap = F.one_hot(labels, self.label_nc).movedim(-1, 1).to(dtype)
        if segmap.dim() != 4 or segmap.shape[0] != x.shape[0] or segmap.shape[1] != self.label_nc:
            raise ValueError(
                f"segmap must have shape ({x.shape[0]}, {self.label_nc}, h, w) (x's batch, label_nc channels), "
                f"got {tuple(segmap.shape)}"
            )
        if tuple(segmap.shape[2:]) != size:
            segmap = F.interpolate(segmap, size=size, mode=self.interpolation)
        return segmap

    def forward(self, x: Tensor, segmap: Tensor, scale: Tensor | None = None, shift: Tensor | None = None) -> Tensor:
        """Normalize x (N, C, H, W), modulate it with gamma and beta predicted from ``segmap`` (see the class), then
        by ``1 + scale`` and ``shift`` (per (n, c) or per channel, optional, as a diffusion model's timestep)."""
        x = self.param_free_norm.check_input(x, ranks=(4,))
        scale = _validation.check_scale_shift(scale, x, "scale")
        shift = _validation.check_scale_shift(shift, x, "shift")
        actv = self.mlp_shared(self.prepare_segmap(segmap, x))
        return self.param_free_norm.modulate(x, self.mlp_gamma(actv), self.mlp_beta(actv), scale, shift)

    def extra_repr(self) -> str:
        return f"{self.num_features}, label_nc={self.label_nc}, interpolation={self.interpolation!r}"
