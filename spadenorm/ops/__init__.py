"""Fused Triton kernels for normalize-and-modulate (backend ``"triton"``).

Imported lazily by :mod:`spadenorm._backend` the first time a call resolves to ``"triton"``; importing it imports
Triton. Set ``TRITON_INTERPRET=1`` before that first import to run the kernels on CPU tensors (tests do).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _eager
from .fused import fused_modulate, register_process_group, statistics

__all__ = ["class_modulated_norm", "modulated_norm"]


def _call(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    *,
    norm: str,
    num_groups: int | None,
    eps: float,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    momentum: float | None,
    training: bool,
    process_group: object,
    num_batches_tracked: Tensor | None,
) -> Tensor:
    factor = _eager.running_factor(training, running_mean, momentum, num_batches_tracked)
    scale, shift, batch_stats = statistics(
        x, norm, num_groups or 0, eps, running_mean, running_var, factor, training, process_group
    )
    group_name = register_process_group(process_group) if norm == "sync_batch" else ""
    y, _, _ = fused_modulate(
        x, gamma, beta, labels, scale, shift, norm, num_groups or 0, eps, batch_stats, group_name
    )  # fmt: skip
    return y


def modulated_norm(x: Tensor, gamma: Tensor | None, beta: Tensor | None, **kwargs) -> Tensor:
    """Arguments validated by :func:`spadenorm.functional.modulated_norm`; gamma/beta already have x's rank."""
    return _call(x, gamma, beta, None, **kwargs)


def class_modulated_norm(x: Tensor, labels: Tensor, gamma_table: Tensor, beta_table: Tensor, **kwargs) -> Tensor:
    """CLADE with the gather in the kernel: ``labels`` (N, *spatial) already at x's size and in range."""
    return _call(x, gamma_table - 1, beta_table, labels, **kwargs)


def supports(x: torch.Tensor) -> bool:
    return x.dtype in (torch.float16, torch.bfloat16, torch.float32)
