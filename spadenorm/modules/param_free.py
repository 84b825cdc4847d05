"""The parameter-free normalization that every conditional layer wraps, holding batch-norm buffers when needed."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .. import _validation
from .._validation import NormName
from ..functional import modulated_norm


def register_running_stats(
    module: nn.Module,
    num_features: int | None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Register ``running_mean``, ``running_var`` and ``num_batches_tracked`` as ``torch.nn.BatchNorm2d`` does.

    ``num_features=None`` registers the three names as ``None`` (no running statistics).
    """
    if num_features is None:
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            module.register_buffer(name, None)
        return
    module.register_buffer("running_mean", torch.zeros(num_features, device=device, dtype=dtype))
    module.register_buffer("running_var", torch.ones(num_features, device=device, dtype=dtype))
    module.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))


def reset_running_stats(module: nn.Module) -> None:
    """Running mean 0, variance 1, counter 0 on a module holding the buffers of :func:`register_running_stats`."""
    if getattr(module, "running_mean", None) is not None:
        module.running_mean.zero_()
        module.running_var.fill_(1.0)
        module.num_batches_tracked.zero_()


class ParamFreeNorm(nn.Module):
    """Normalization without affine parameters: ``(x - mean) / sqrt(var + eps)`` with ``norm``'s statistics.

    For ``norm="batch"`` and ``"sync_batch"`` it holds ``running_mean``, ``running_var`` and ``num_batches_tracked``
    under torch's names, so it loads the state of a ``torch.nn.BatchNorm2d(affine=False)``; the other norms hold no
    state, like ``torch.nn.InstanceNorm2d(affine=False)``. Conditional layers keep one as ``param_free_norm`` and pass
    :meth:`functional_kwargs` to the functional op, which fuses normalization and modulation.

    Args:
        num_features: C, the number of channels.
        norm: ``"instance"``, ``"batch"``, ``"sync_batch"``, ``"group"``, ``"layer"`` or ``"none"``.
        eps: added to the variance, >= 0.
        momentum: running-statistics factor, ``None`` for a cumulative average.
        num_groups: groups for ``norm="group"``.

    Example:
        >>> import torch
        >>> norm = ParamFreeNorm(8, "batch")
        >>> sorted(norm.state_dict())
        ['num_batches_tracked', 'running_mean', 'running_var']
        >>> norm(torch.randn(4, 8, 5, 5)).shape
        torch.Size([4, 8, 5, 5])
    """

    def __init__(
        self,
        num_features: int,
        norm: NormName = "instance",
        *,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        num_groups: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _validation.check_positive_int(num_features, "num_features")
        self.num_features = num_features
        self.norm = _validation.check_norm(norm)
        self.eps = _validation.check_eps(eps)
        self.momentum = _validation.check_momentum(momentum)
        self.num_groups = _validation.check_num_groups(self.norm, num_groups, num_features)
        if self.norm in _validation.BATCH_NORMS:
            register_running_stats(self, num_features, device=device, dtype=dtype)
        self.process_group: Any = None

    @property
    def tracks_running_stats(self) -> bool:
        return self.norm in _validation.BATCH_NORMS

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, counter 0 (batch norms only; a no-op otherwise)."""
        reset_running_stats(self)

    def reset_parameters(self) -> None:
        self.reset_running_stats()

    def functional_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`spadenorm.functional.modulated_norm` in the module's current mode."""
        kwargs: dict[str, Any] = {
            "norm": self.norm,
            "num_groups": self.num_groups,
            "eps": self.eps,
            "momentum": self.momentum,
            "training": self.training,
        }
        if self.tracks_running_stats:
            kwargs.update(
                running_mean=self.running_mean,
                running_var=self.running_var,
                num_batches_tracked=self.num_batches_tracked,
                process_group=self.process_group,
            )
        return kwargs

    def forward(self, x: Tensor) -> Tensor:
        """Normalize x (N, C, \\*spatial); batch norms use running statistics in eval mode."""
        return modulated_norm(x, **self.functional_kwargs())

    def extra_repr(self) -> str:
        parts = [f"{self.num_features}", f"norm={self.norm!r}", f"eps={self.eps}"]
        if self.num_groups is not None:
            parts.append(f"num_groups={self.num_groups}")
        if self.tracks_running_stats:
            parts.append(f"momentum={self.momentum}")
        return ", ".join(parts)
