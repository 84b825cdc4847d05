"""Fused Triton kernels for normalize-and-modulate (backend ``"triton"``).

Layers, bottom up: ``kernels/`` (``@triton.jit``) -> :mod:`.launch` (one launcher per kernel: allocate, launch as the
plan says, through :mod:`.launcher`) -> :mod:`.ops` (the launchers registered as custom ops, with fakes) ->
:mod:`.autograd` (forward and backward of a call, collectives). :mod:`.plan` decides every launch of a call once,
from :mod:`.layout` and :mod:`.occupancy`. Importing this package imports Triton; set ``TRITON_INTERPRET=1`` before
the first import to run the kernels on CPU tensors (the tests do).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..._core import Modulation, NormSpec, RunningStats
from . import ops
from .autograd import TritonModulatedNorm, forward
from .prepared import prepare

__all__ = ["modulated_norm"]


def modulated_norm(x: Tensor, mod: Modulation, spec: NormSpec, running: RunningStats | None, training: bool) -> Tensor:
    """The op on resolved arguments (see :func:`spadenorm._backend.modulated_norm`): its prepared call (plan and
    launch variants), then the autograd function, or the forward alone when nothing needs a gradient."""
    gamma, beta, labels, scale, shift = mod
    factor = running.count_batch() if running is not None and training else 0.0
    grad = torch.is_grad_enabled() and (
        x.requires_grad
        or (gamma is not None and gamma.requires_grad)
        or (beta is not None and beta.requires_grad)
        or (scale is not None and scale.requires_grad)
        or (shift is not None and shift.requires_grad)
    )
    need_z = grad and scale is not None and scale.requires_grad
    call = prepare(
        x, gamma, beta, labels, scale, shift, spec, training, need_z, ops.eager(x, gamma, beta, labels, scale, shift)
    )
    if not grad:
        return forward(x, gamma, beta, labels, scale, shift, spec, running, factor, call)[0]
    return TritonModulatedNorm.apply(x, gamma, beta, labels, scale, shift, spec, running, factor, call)
