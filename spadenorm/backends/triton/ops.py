"""The kernels as ``torch.library`` custom ops: pure tensor functions with allocation-only fakes.

Registered ops are opaque to ``torch.compile`` (which would otherwise trace into Triton, or fail to under the
interpreter) and pass ``torch.library.opcheck``. Every argument is read; absent tensors are ``None``; outputs never
alias inputs; a fake allocates exactly what its op returns, with the same strides. Each op launches on x's GPU.
Autograd lives one layer up, in :mod:`.autograd`, which also runs the collectives of sync-batch between ops.

Names: ``rstd`` and ``offset`` are the fp32 statistics (``x_hat = x * rstd + offset``); ``scale`` and ``shift`` the
second, per-(n, c) modulation of ``z = x_hat * (1 + gamma) + beta`` into ``y = z * (1 + scale) + shift``.

:func:`run` calls an op the cheap way where nothing observes the dispatcher: eager calls on plain tensors run the
op's Python function directly (no dispatcher round trip: tens of microseconds per op), while ``torch.compile``,
export and any other tracing (a dispatch mode, tensor subclasses such as fake tensors) go through the registered op.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

from ..._core import result_dtype
from . import launch
from .launch import device_guard, grad_outputs_like, output_like
from .layout import cdiv, spatial_size

_PYTHON_FUNCTIONS: dict[Any, Callable[..., Any]] = {}  # registered op -> its Python function
_MUTATED: dict[Any, tuple[int, ...]] = {}  # registered op -> positions of the arguments it mutates
_PLAIN_TENSORS = (Tensor, torch.nn.Parameter)


def _op(name: str, mutates_args: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Any]:
    """Register ``fn`` as the custom op ``spadenorm::name`` and remember its Python function for :func:`run`."""

    def register(fn: Callable[..., Any]) -> Any:
        op = torch.library.custom_op(f"spadenorm::{name}", fn, mutates_args=mutates_args)
        _PYTHON_FUNCTIONS[op] = fn
        parameters = list(inspect.signature(fn).parameters)
        _MUTATED[op] = tuple(parameters.index(arg) for arg in mutates_args)
        return op

    return register


def run(op: Any, *args: Any) -> Any:
    """Call a registered op: directly in eager mode on plain tensors, through the dispatcher when traced."""
    direct = (
        not torch.compiler.is_compiling()
        and _get_current_dispatch_mode() is None
        and all(type(a) in _PLAIN_TENSORS for a in args if isinstance(a, Tensor))
    )
    if not direct:
        return op(*args)
    out = _PYTHON_FUNCTIONS[op](*args)
    for position in _MUTATED[op]:  # as the dispatcher would: in-place updates bump the version counter
        if args[position] is not None:
            torch.autograd.graph.increment_version(args[position])
    return out


@_op("partial_stats")
def partial_stats(x: Tensor, span: int) -> tuple[Tensor, Tensor]:
    """fp32 (N, C, P) mean and M2 of x over the P = ceil(S / span) spans of S."""
    with device_guard(x):
        return launch.partial_stats(x, span)


@partial_stats.register_fake
def _(x: Tensor, span: int) -> tuple[Tensor, Tensor]:
    mean = x.new_empty((x.shape[0], x.shape[1], cdiv(spatial_size(x), span)), dtype=torch.float32)
    return mean, torch.empty_like(mean)


@_op("finalize_stats", mutates_args=("running_mean", "running_var"))
def finalize_stats(
    mean: Tensor,
    m2: Tensor,
    span: int,
    spatial: int,
    groups: int,
    batch: bool,
    eps: float,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    factor: float,
    factor_tensor: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """fp32 ``(rstd, offset)`` per channel from the partial moments, (1, C) for batch sets, else (N, C); fp32
    running estimates updated in place."""
    with device_guard(mean):
        return launch.finalize_stats(
            mean, m2, span, spatial, groups, batch, eps, running_mean, running_var, factor, factor_tensor
        )


@finalize_stats.register_fake
def _(
    mean: Tensor,
    m2: Tensor,
    span: int,
    spatial: int,
    groups: int,
    batch: bool,
    eps: float,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    factor: float,
    factor_tensor: Tensor | None,
) -> tuple[Tensor, Tensor]:
    rstd = mean.new_empty((1 if batch else mean.shape[0], mean.shape[1]))
    return rstd, torch.empty_like(rstd)


@_op("row_forward")
def row_forward(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    shift: Tensor | None,
    groups: int,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(y, rstd, offset)``: ``groups`` statistics per sample and the modulated output in one launch."""
    with device_guard(x):
        return launch.row_forward(x, gamma, beta, labels, scale, shift, groups, eps)


@row_forward.register_fake
def _(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    shift: Tensor | None,
    groups: int,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor]:
    rstd = x.new_empty(x.shape[:2], dtype=torch.float32)
    return output_like(x, result_dtype(x, gamma, beta, scale, shift)), rstd, torch.empty_like(rstd)


@_op("modulate")
def modulate(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    shift: Tensor | None,
    rstd: Tensor,
    offset: Tensor,
) -> Tensor:
    """``y = ((x * rstd + offset) * (1 + gamma) + beta) * (1 + scale) + shift`` with per-(n, c) or per-channel
    statistics."""
    with device_guard(x):
        return launch.modulate(x, gamma, beta, labels, scale, shift, rstd, offset)


@modulate.register_fake
def _(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    shift: Tensor | None,
    rstd: Tensor,
    offset: Tensor,
) -> Tensor:
    return output_like(x, result_dtype(x, gamma, beta, scale, shift))


@_op("backward_sums")
def backward_sums(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    rstd: Tensor,
    offset: Tensor,
    span: int,
    need_z: bool,
) -> Tensor:
    """fp32 (6, N, C, P): sums of dz, dz * x_hat, g, g * x_hat, dy and (``need_z``) dy * z per (n, c) and span."""
    with device_guard(x):
        return launch.backward_sums(dy, x, gamma, beta, labels, scale, rstd, offset, span, need_z)


@backward_sums.register_fake
def _(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    rstd: Tensor,
    offset: Tensor,
    span: int,
    need_z: bool,
) -> Tensor:
    return x.new_empty((6, x.shape[0], x.shape[1], cdiv(spatial_size(x), span)), dtype=torch.float32)


@_op("backward_dx")
def backward_dx(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    rstd: Tensor,
    offset: Tensor,
    coef_x: Tensor | None,
    coef_0: Tensor | None,
    partials: Tensor | None,
    set_size: int,
    batch: bool,
    group_size: int,
    write_dx: bool,
    write_dgamma: bool,
    write_dbeta: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dgamma_map, dbeta_map)`` from the statistics and, for statistics of x, the projection coefficients
    (given, or pooled from the sums kernel's partials)."""
    with device_guard(x):
        return launch.backward_dx(dy, x, gamma, beta, labels, scale, rstd, offset, coef_x, coef_0, partials,
                                  set_size, batch, group_size, write_dx, write_dgamma, write_dbeta)  # fmt: skip


@backward_dx.register_fake
def _(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    rstd: Tensor,
    offset: Tensor,
    coef_x: Tensor | None,
    coef_0: Tensor | None,
    partials: Tensor | None,
    set_size: int,
    batch: bool,
    group_size: int,
    write_dx: bool,
    write_dgamma: bool,
    write_dbeta: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    return grad_outputs_like(x, gamma, beta, write_dx, write_dgamma, write_dbeta)


@_op("row_backward")
def row_backward(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    rstd: Tensor,
    offset: Tensor,
    groups: int,
    write_dx: bool,
    write_dgamma: bool,
    write_dbeta: bool,
    need_z: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(dx, dgamma_map, dbeta_map, sums)`` of ``groups`` per-sample statistics in one launch."""
    with device_guard(x):
        return launch.row_backward(
            dy, x, gamma, beta, labels, scale, rstd, offset, groups, write_dx, write_dgamma, write_dbeta, need_z
        )


@row_backward.register_fake
def _(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    rstd: Tensor,
    offset: Tensor,
    groups: int,
    write_dx: bool,
    write_dgamma: bool,
    write_dbeta: bool,
    need_z: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    dx, dgamma, dbeta = grad_outputs_like(x, gamma, beta, write_dx, write_dgamma, write_dbeta)
    return dx, dgamma, dbeta, x.new_empty((4, x.shape[0], x.shape[1]), dtype=torch.float32)


@_op("class_table_grads")
def class_table_grads(
    dy: Tensor,
    x: Tensor,
    labels: Tensor,
    scale: Tensor | None,
    rstd: Tensor,
    offset: Tensor,
    num_classes: int,
    span: int,
) -> Tensor:
    """fp32 (2, K, C): the gradients of CLADE's (K, C) gamma and beta tables."""
    with device_guard(x):
        return launch.class_table_grads(dy, x, labels, scale, rstd, offset, num_classes, span)


@class_table_grads.register_fake
def _(
    dy: Tensor,
    x: Tensor,
    labels: Tensor,
    scale: Tensor | None,
    rstd: Tensor,
    offset: Tensor,
    num_classes: int,
    span: int,
) -> Tensor:
    return x.new_empty((2, num_classes, x.shape[1]), dtype=torch.float32)
