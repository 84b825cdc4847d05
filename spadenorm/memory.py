"""Measuring what autograd keeps for backward."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["saved_tensor_bytes"]


def saved_tensor_bytes(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn(*args, **kwargs)`` runs.

    Counted with ``torch.autograd.graph.saved_tensors_hooks``; a storage saved several times (a tensor and its views)
    counts once. The graph ``fn`` builds is released when this returns.

    Example:
        >>> import torch
        >>> from spadenorm.functional import modulated_norm
        >>> x, gamma = torch.randn(2, 4, 8, 8, requires_grad=True), torch.randn(2, 4, 8, 8, requires_grad=True)
        >>> saved_tensor_bytes(modulated_norm, x, gamma) <= 2 * x.numel() * 4 + 2 * 8 * 4  # x, gamma, fp32 stats
        True
    """
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args, **kwargs)
    del out
    return sum(storages.values())
