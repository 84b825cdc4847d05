"""The kernels as ``torch.library`` custom ops: pure tensor functions with allocation-only fakes.

Registered ops are opaque to ``torch.compile`` (which would otherwise trace into Triton, or fail to under the
interpreter) and pass ``torch.library.opcheck``. Every argument is read; absent tensors are ``None``; outputs never
alias inputs; a fake allocates exactly what its op returns, with the same strides. Each op launches on x's GPU.
Autograd lives one layer up, in :mod:`.autograd`, which also runs the collectives of sync-batch between ops.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..._core import result_dtype
from . import launch
from .launch import device_guard, grad_outputs_like, output_like
from .layout import cdiv, spatial_size


@torch.library.custom_op("spadenorm::partial_stats", mutates_args=())
def partial_stats(x: Tensor, span: int) -> tuple[Tensor, Tensor]:
    """fp32 (N, C, P) mean and M2 of x over the P = ceil(S / span) spans of S."""
    with device_guard(x):
        return launch.partial_stats(x, span)


@partial_stats.register_fake
def _(x: Tensor, span: int) -> tuple[Tensor, Tensor]:
    mean = x.new_empty((x.shape[0], x.shape[1], cdiv(spatial_size(x), span)), dtype=torch.float32)
    return mean, torch.empty_like(mean)


@torch.library.custom_op("spadenorm::row_forward", mutates_args=())
def row_forward(
    x: Tensor, gamma: Tensor | None, beta: Tensor | None, labels: Tensor | None, groups: int, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``(y, scale, shift)``: ``groups`` statistics per sample and the modulated output in one launch."""
    with device_guard(x):
        return launch.row_forward(x, gamma, beta, labels, groups, eps)


@row_forward.register_fake
def _(
    x: Tensor, gamma: Tensor | None, beta: Tensor | None, labels: Tensor | None, groups: int, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    scale = x.new_empty(x.shape[:2], dtype=torch.float32)
    return output_like(x, result_dtype(x, gamma, beta)), scale, torch.empty_like(scale)


@torch.library.custom_op("spadenorm::modulate", mutates_args=())
def modulate(
    x: Tensor, gamma: Tensor | None, beta: Tensor | None, labels: Tensor | None, scale: Tensor, shift: Tensor
) -> Tensor:
    """``y = (x * scale + shift) * (1 + gamma) + beta`` with fp32 per-(n, c) or per-channel scale and shift."""
    with device_guard(x):
        return launch.modulate(x, gamma, beta, labels, scale, shift)


@modulate.register_fake
def _(
    x: Tensor, gamma: Tensor | None, beta: Tensor | None, labels: Tensor | None, scale: Tensor, shift: Tensor
) -> Tensor:
    return output_like(x, result_dtype(x, gamma, beta))


@torch.library.custom_op("spadenorm::backward_sums", mutates_args=())
def backward_sums(
    dy: Tensor, x: Tensor, gamma: Tensor | None, labels: Tensor | None, scale: Tensor, shift: Tensor, span: int
) -> Tensor:
    """fp32 (4, N, C): per-(n, c) sums of dy, dy * x_hat, g and g * x_hat, over spans of ``span`` positions."""
    with device_guard(x):
        return launch.backward_sums(dy, x, gamma, labels, scale, shift, span)


@backward_sums.register_fake
def _(
    dy: Tensor, x: Tensor, gamma: Tensor | None, labels: Tensor | None, scale: Tensor, shift: Tensor, span: int
) -> Tensor:
    return x.new_empty((4, x.shape[0], x.shape[1]), dtype=torch.float32)


@torch.library.custom_op("spadenorm::backward_dx", mutates_args=())
def backward_dx(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    labels: Tensor | None,
    scale: Tensor,
    shift: Tensor,
    coef_x: Tensor | None,
    coef_0: Tensor | None,
    write_dx: bool,
    write_dgamma: bool,
) -> tuple[Tensor, Tensor]:
    """``(dx, dgamma_map)`` from the statistics and, for statistics of x, the projection coefficients."""
    with device_guard(x):
        return launch.backward_dx(dy, x, gamma, labels, scale, shift, coef_x, coef_0, write_dx, write_dgamma)


@backward_dx.register_fake
def _(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    labels: Tensor | None,
    scale: Tensor,
    shift: Tensor,
    coef_x: Tensor | None,
    coef_0: Tensor | None,
    write_dx: bool,
    write_dgamma: bool,
) -> tuple[Tensor, Tensor]:
    return grad_outputs_like(x, gamma, write_dx, write_dgamma)


@torch.library.custom_op("spadenorm::row_backward", mutates_args=())
def row_backward(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    labels: Tensor | None,
    scale: Tensor,
    shift: Tensor,
    groups: int,
    write_dx: bool,
    write_dgamma: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dgamma_map, sums)`` of ``groups`` per-sample statistics in one launch."""
    with device_guard(x):
        return launch.row_backward(dy, x, gamma, labels, scale, shift, groups, write_dx, write_dgamma)


@row_backward.register_fake
def _(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    labels: Tensor | None,
    scale: Tensor,
    shift: Tensor,
    groups: int,
    write_dx: bool,
    write_dgamma: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    dx, dgamma = grad_outputs_like(x, gamma, write_dx, write_dgamma)
    return dx, dgamma, x.new_empty((2, x.shape[0], x.shape[1]), dtype=torch.float32)


@torch.library.custom_op("spadenorm::class_table_grads", mutates_args=())
def class_table_grads(
    dy: Tensor, x: Tensor, labels: Tensor, scale: Tensor, shift: Tensor, num_classes: int, span: int
) -> Tensor:
    """fp32 (2, K, C): the gradients of CLADE's (K, C) gamma and beta tables."""
    with device_guard(x):
        return launch.class_table_grads(dy, x, labels, scale, shift, num_classes, span)


@class_table_grads.register_fake
def _(dy: Tensor, x: Tensor, labels: Tensor, scale: Tensor, shift: Tensor, num_classes: int, span: int) -> Tensor:
    return x.new_empty((2, num_classes, x.shape[1]), dtype=torch.float32)
