"""Conditional batch normalization (de Vries et al. 2017; Miyato and Koyama 2018), for 1 to 3 spatial dimensions."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _backend, _validation
from .._core import Modulation, NormSpec
from .param_free import BatchNormBuffers


class ConditionalBatchNorm(BatchNormBuffers):
    r"""Batch norm whose scale and shift come from a condition: :math:`y = \hat{x} (1 + \gamma(y)) + \beta(y)`.

    With ``num_classes``, gamma and beta are rows of an embedding indexed by class ids (N,); with ``cond_dim``, a
    linear projection of condition vectors (N, cond_dim). Both start at zero, so a fresh layer is plain batch norm.
    Buffers and the train/eval behaviour follow ``torch.nn.BatchNorm1d/2d/3d(affine=False)``; x is (N, C, \*spatial)
    with 1 to 3 spatial dimensions (:class:`ConditionalBatchNorm2d` takes (N, C, H, W) only).

    Args:
        num_features: C.
        num_classes: number of classes, for class-id conditions (give exactly one of ``num_classes``, ``cond_dim``).
        cond_dim: size of condition vectors.
        eps: variance epsilon, as in ``torch.nn.BatchNorm2d``.
        momentum: running-statistics momentum (``None``: cumulative average), as in ``torch.nn.BatchNorm2d``.
        track_running_stats: keep running statistics for eval mode, as in ``torch.nn.BatchNorm2d``.

    Example:
        >>> import torch
        >>> from spadenorm import ConditionalBatchNorm
        >>> layer = ConditionalBatchNorm(16, num_classes=10)
        >>> layer(torch.randn(4, 16, 8, 8, 8), torch.tensor([0, 3, 3, 9])).shape
        torch.Size([4, 16, 8, 8, 8])
    """

    _ranks: tuple[int, ...] = (3, 4, 5)

    def __init__(
        self,
        num_features: int,
        num_classes: int | None = None,
        cond_dim: int | None = None,
        *,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if (num_classes is None) == (cond_dim is None):
            raise ValueError(
                f"give exactly one of num_classes and cond_dim, got num_classes={num_classes}, cond_dim={cond_dim}"
            )
        _validation.check_positive_int(num_features, "num_features")
        _validation.check_optional_positive_int(num_classes, "num_classes")
        _validation.check_optional_positive_int(cond_dim, "cond_dim")
        self.num_features = num_features
        self.num_classes = num_classes
        self.cond_dim = cond_dim
        self.eps = _validation.check_eps(eps)
        self.momentum = _validation.check_momentum(momentum)
        self.track_running_stats = _validation.check_bool(track_running_stats, "track_running_stats")
        self.embedding: nn.Embedding | None = None
        self.projection: nn.Linear | None = None
        if num_classes is not None:
            self.embedding = nn.Embedding(num_classes, 2 * num_features, device=device, dtype=dtype)
        elif cond_dim is not None:
            self.projection = nn.Linear(cond_dim, 2 * num_features, device=device, dtype=dtype)
        self._register_running_stats(num_features if track_running_stats else None, device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero the condition mapping (identity modulation) and reset the running statistics."""
        self.reset_running_stats()
        if self.embedding is not None:
            nn.init.zeros_(self.embedding.weight)
        if self.projection is not None:
            nn.init.zeros_(self.projection.weight)
            nn.init.zeros_(self.projection.bias)

    def _modulation(self, y: object, batch: int) -> Tensor:
        """(N, 2C) rows of gamma and beta for the condition ``y``."""
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
        if self.embedding is not None and self.num_classes is not None:
            y = _validation.check_integer_ids(y, "y")
            if tuple(y.shape) != (batch,):
                raise ValueError(f"y must be class ids of shape ({batch},), got {tuple(y.shape)}")
            _validation.check_label_range(y, self.num_classes, "y")
            return self.embedding(y if y.dtype in (torch.int32, torch.int64) else y.long())
        assert self.projection is not None  # exactly one of the two exists
        if not y.is_floating_point():
            raise TypeError(f"y must be floating-point condition vectors, got dtype {y.dtype}")
        if tuple(y.shape) != (batch, self.cond_dim):
            raise ValueError(f"y must be condition vectors of shape ({batch}, {self.cond_dim}), got {tuple(y.shape)}")
        return self.projection(y)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Batch-normalize x (N, C, \\*spatial) and modulate it with the rows for ``y``: class ids (N,) or vectors
        (N, cond_dim)."""
        _validation.check_input(x, ranks=self._ranks)
        _validation.check_channels(x, self.num_features)
        # As torch.nn.BatchNorm2d: batch statistics in training or without running stats, else the running ones.
        spec = NormSpec("batch", eps=self.eps)
        training = self.training or not self.track_running_stats
        _validation.check_batch_size(spec, x, training)
        spatial = (1,) * (x.dim() - 2)
        gamma, beta = self._modulation(y, x.shape[0]).unflatten(1, (2, self.num_features, *spatial)).unbind(1)
        return _backend.modulated_norm(x, Modulation(gamma, beta), spec, self._running_stats(self.momentum), training)

    def extra_repr(self) -> str:
        cond = f"num_classes={self.num_classes}" if self.num_classes is not None else f"cond_dim={self.cond_dim}"
        return (
            f"{self.num_features}, {cond}, eps={self.eps}, momentum={self.momentum}, "
            f"track_running_stats={self.track_running_stats}"
        )


class ConditionalBatchNorm2d(ConditionalBatchNorm):
    r""":class:`ConditionalBatchNorm` for (N, C, H, W) input only, as ``torch.nn.BatchNorm2d``.

    Example:
        >>> import torch
        >>> from spadenorm import ConditionalBatchNorm2d
        >>> layer = ConditionalBatchNorm2d(16, num_classes=10)
        >>> layer(torch.randn(4, 16, 8, 8), torch.tensor([0, 3, 3, 9])).shape
        torch.Size([4, 16, 8, 8])
    """

    _ranks = (4,)
