"""AdaIN: adaptive instance normalization (Huang and Belongie 2017; StyleGAN's style-vector form)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _backend, _validation
from .._core import Modulation, NormSpec
from ..functional import _style_modulation


class AdaIN(nn.Module):
    r"""Adaptive instance normalization from a style feature map or a style vector.

    * ``style`` of x's rank (N, C, h, w): statistics transfer, :func:`spadenorm.functional.adain`.
    * ``style`` of shape (N, style_dim): a learned linear map gives per-(n, c) gamma and beta and
      :math:`y = \mathrm{IN}(x) (1 + \gamma) + \beta` (StyleGAN's AdaIN). Needs ``num_features`` and ``style_dim``.

    Args:
        num_features: C (required with ``style_dim``).
        style_dim: size of style vectors; ``None`` for feature-map styles only.
        eps: variance epsilon.

    Example:
        >>> import torch
        >>> from spadenorm import AdaIN
        >>> layer = AdaIN(32, style_dim=64)
        >>> layer(torch.randn(2, 32, 16, 16), torch.randn(2, 64)).shape
        torch.Size([2, 32, 16, 16])
    """

    def __init__(
        self,
        num_features: int | None = None,
        style_dim: int | None = None,
        *,
        eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if style_dim is not None and num_features is None:
            raise ValueError(f"style_dim={style_dim} needs num_features (the channels gamma and beta are made for)")
        _validation.check_optional_positive_int(num_features, "num_features")
        _validation.check_optional_positive_int(style_dim, "style_dim")
        self.num_features = num_features
        self.style_dim = style_dim
        self.eps = _validation.check_eps(eps)
        self.projection: nn.Linear | None = None
        if style_dim is not None and num_features is not None:
            self.projection = nn.Linear(style_dim, 2 * num_features, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default Linear weights, zero bias: gamma and beta start centred on 0 (scale 1, shift 0)."""
        if self.projection is not None:
            self.projection.reset_parameters()
            nn.init.zeros_(self.projection.bias)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """Restyle x (N, C, \\*spatial) with a style feature map of x's rank or a style vector (N, style_dim)."""
        _validation.check_input(x)
        if self.num_features is not None:
            _validation.check_channels(x, self.num_features)
        if not isinstance(style, Tensor):
            raise TypeError(f"style must be a torch.Tensor, got {type(style).__name__}")
        spec = NormSpec("instance", eps=self.eps)
        if style.dim() == 2:
            if self.projection is None:
                raise ValueError(
                    "a style vector (N, style_dim) needs AdaIN(num_features, style_dim); this layer has none"
                )
            if tuple(style.shape) != (x.shape[0], self.style_dim):
                raise ValueError(
                    f"style vectors must have shape ({x.shape[0]}, {self.style_dim}), got {tuple(style.shape)}"
                )
            _validation.check_batch_size(spec, x, training=True)
            spatial = (1,) * (x.dim() - 2)
            gamma, beta = self.projection(style).unflatten(1, (2, x.shape[1], *spatial)).unbind(1)
        else:
            _validation.check_batch_size(spec, x, training=True)
            gamma, beta = _style_modulation(x, style, spec)
        return _backend.modulated_norm(x, Modulation(gamma, beta), spec, None, True)

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, style_dim={self.style_dim}, eps={self.eps}"
