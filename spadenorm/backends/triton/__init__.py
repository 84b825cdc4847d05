"""Fused Triton kernels for normalize-and-modulate (backend ``"triton"``).

Layers, bottom up: ``kernels/`` (``@triton.jit``) -> :mod:`.launch` (allocation, tiles, one launch each) ->
:mod:`.ops` (registered custom ops with fakes) -> :mod:`.autograd` (statistics step, forward and backward,
collectives). Importing this package imports Triton; set ``TRITON_INTERPRET=1`` before the first import to run the
kernels on CPU tensors (the tests do).
"""

from __future__ import annotations

from torch import Tensor

from ..._core import Modulation, NormSpec, RunningStats
from .autograd import TritonModulatedNorm

__all__ = ["modulated_norm"]


def modulated_norm(x: Tensor, mod: Modulation, spec: NormSpec, running: RunningStats | None, training: bool) -> Tensor:
    """The op on resolved arguments (see :func:`spadenorm._backend.modulated_norm`)."""
    factor = running.count_batch() if running is not None and training else 0.0
    return TritonModulatedNorm.apply(x, *mod, spec, running, factor, training)
