"""The memory-lean PyTorch implementation of normalize-and-modulate (backend ``"torch"``).

``y = (x - mean) * rstd * (1 + gamma) + beta`` with statistics over a reduction set S of size M:

=============  =====================================  ==========================
norm           S for one statistic                     statistic shape
=============  =====================================  ==========================
``instance``   (H, W) of one (n, c)                    (N, C, 1, 1)
``batch``      (N, H, W) of one c                      (1, C, 1, 1)
``group``      (C/G, H, W) of one (n, group)           (N, C, 1, 1), equal in a group
``layer``      (C, H, W) of one n                      (N, 1, 1, 1)
=============  =====================================  ==========================

The autograd function saves only ``x``, ``gamma`` (when given) and the fp32 (fp64 for fp64 inputs) ``mean`` and
``rstd``; x-hat is recomputed in backward. With ``g = dy * (1 + gamma)`` and ``mean_S`` the mean over S:

* ``dx = rstd * (g - mean_S(g) - x_hat * mean_S(g * x_hat))`` for batch statistics,
  ``dx = rstd * g`` for running (constant) statistics;
* ``dgamma = dy * x_hat`` and ``dbeta = dy``, summed over the dimensions where gamma/beta broadcast.

For ``sync_batch`` the two per-channel sums of the ``dx`` formula are all-reduced across processes.
Low-precision inputs are computed in fp32 and the result is rounded once.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import distributed

_REDUCED_PRECISION = (torch.float16, torch.bfloat16)


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """fp64 when any operand is fp64, else fp32: the dtype of statistics and arithmetic."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def result_dtype(*tensors: Tensor | None) -> torch.dtype:
    """Torch's type promotion over the operands, as the original ``norm(x) * (1 + gamma) + beta`` would give."""
    dtypes = [t.dtype for t in tensors if t is not None]
    out = dtypes[0]
    for d in dtypes[1:]:
        out = torch.promote_types(out, d)
    return out


def _spatial_dims(x: Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.dim()))


def reduce_over_sets(t: Tensor, norm: str, num_groups: int | None) -> Tensor:
    """Sum ``t`` (shaped like x) over each statistic's reduction set, broadcast back to the statistic shape.

    The result has shape (N, C, 1, ...) for instance and group, (1, C, 1, ...) for batch, (N, 1, 1, ...) for layer.
    """
    spatial = _spatial_dims(t)
    if norm == "instance":
        return t.sum(spatial, keepdim=True)
    if norm in ("batch", "sync_batch"):
        return t.sum((0, *spatial), keepdim=True)
    if norm == "layer":
        return t.sum((1, *spatial), keepdim=True)
    per_channel = t.sum(spatial, keepdim=True)
    return expand_groups(per_channel.unflatten(1, (num_groups, -1)).sum(2, keepdim=True), t.shape[1])


def expand_groups(per_group: Tensor, num_channels: int) -> Tensor:
    """(N, G, 1, 1, ...) -> (N, C, 1, ...): every channel gets its group's value."""
    shape = list(per_group.shape)
    shape[2] = num_channels // shape[1]
    return per_group.expand(shape).flatten(1, 2)


def set_size(x: Tensor, norm: str, num_groups: int | None) -> int:
    """Number of elements M in one reduction set (local to this process)."""
    spatial = math.prod(x.shape[2:])
    if norm == "instance":
        return spatial
    if norm in ("batch", "sync_batch"):
        return x.shape[0] * spatial
    if norm == "layer":
        return x.shape[1] * spatial
    return x.shape[1] // num_groups * spatial


def per_channel(stat: Tensor, x: Tensor) -> Tensor:
    """(N, G) statistics -> (N, C, 1, ...) (or (N, 1, 1, ...) for one group)."""
    n, groups = stat.shape
    view = stat.reshape((n, groups) + (1,) * (x.dim() - 1))
    return view.reshape((n, 1) + (1,) * (x.dim() - 2)) if groups == 1 else expand_groups(view, x.shape[1])


def _row_stats(x: Tensor, groups: int, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """x_hat, mean and rstd for statistics per (n, group), by torch's batch-norm kernel on a (1, N*G, -1) view.

    The batch-norm kernel computes a centred variance; ``native_group_norm`` on CPU loses digits to cancellation
    when |mean| >> std (E[x^2] - E[x]^2), which the tests catch. Non-contiguous inputs are copied for the statistics
    only; x_hat is then formed in x's own memory format.
    """
    n = x.shape[0]
    if x.is_contiguous():  # (1, N*G, -1) is a view: x_hat comes out in x's layout
        x_hat, mean, rstd = torch.native_batch_norm(x.view(1, n * groups, -1), None, None, None, None, True, 0.0, eps)
        return x_hat.view(x.shape), *_per_channel_pair(mean, rstd, x, groups)
    _, mean, rstd = torch.native_batch_norm(x.reshape(1, n * groups, -1), None, None, None, None, True, 0.0, eps)
    mean, rstd = _per_channel_pair(mean, rstd, x, groups)
    return torch.addcmul(-mean * rstd, x, rstd), mean, rstd


def _per_channel_pair(mean: Tensor, rstd: Tensor, x: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    n = x.shape[0]
    return per_channel(mean.reshape(n, groups), x), per_channel(rstd.reshape(n, groups), x)


def _group_count(norm: str, num_groups: int | None, num_channels: int) -> int:
    return {"instance": num_channels, "layer": 1}.get(norm, num_groups or 0)


def _batch_norm_stats(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    momentum: float,
    eps: float,
    sync: bool,
    process_group: object,
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Training-mode batch statistics: (x_hat, mean, rstd, count), running statistics updated in place."""
    stat_shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
    count = set_size(x, "batch", None)
    if not sync and (running_mean is None or running_mean.dtype == x.dtype):
        # One native call: statistics, x_hat and torch's own running-statistics update.
        x_hat, mean, rstd = torch.native_batch_norm(x, None, None, running_mean, running_var, True, momentum, eps)
        return x_hat, mean.reshape(stat_shape), rstd.reshape(stat_shape), count
    # Statistics first (eps=0 so that var = rstd0**-2 exactly up to rounding), then merge and update ourselves.
    _, mean, rstd0 = torch.native_batch_norm(x, None, None, None, None, True, 0.0, 0.0)
    mean, var = mean.reshape(stat_shape), rstd0.reshape(stat_shape).pow(-2)
    if sync:
        mean, var, count = distributed.sync_mean_var(mean, var, count, process_group)
    if running_mean is not None:
        update_running_stats(running_mean, running_var, mean, var, count, momentum)
    rstd = torch.rsqrt(var + eps)
    return torch.addcmul(-mean * rstd, x, rstd), mean, rstd, count


class LeanModulatedNorm(torch.autograd.Function):
    """Autograd function for ``(x - mean) * rstd * (1 + gamma) + beta``; see the module docstring.

    Running statistics are updated in place inside ``forward`` (batch norms in training).
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        gamma: Tensor | None,
        beta: Tensor | None,
        running_mean: Tensor | None,
        running_var: Tensor | None,
        norm: str,
        num_groups: int | None,
        eps: float,
        momentum: float,
        training: bool,
        process_group: object,
    ) -> Tensor:
        dtype = compute_dtype(x, gamma, beta)
        xc = x.to(dtype)
        batch_stats = True
        count = set_size(x, norm, num_groups)
        if norm in ("instance", "group", "layer"):
            y, mean, rstd = _row_stats(xc, _group_count(norm, num_groups, x.shape[1]), eps)
        elif training:
            sync = norm == "sync_batch" and distributed.is_sync_active(process_group)
            y, mean, rstd, count = _batch_norm_stats(xc, running_mean, running_var, momentum, eps, sync, process_group)
        else:
            batch_stats = False
            stat_shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
            mean = running_mean.to(dtype).reshape(stat_shape)
            rstd = torch.rsqrt(running_var.to(dtype).reshape(stat_shape) + eps)
            y = torch.addcmul(-mean * rstd, xc, rstd)
        if gamma is not None:
            y.addcmul_(y, gamma)
        if beta is not None:
            y.add_(beta)
        ctx.save_for_backward(x, gamma, mean, rstd)
        ctx.norm, ctx.num_groups, ctx.batch_stats = norm, num_groups, batch_stats
        ctx.count, ctx.process_group = count, process_group
        ctx.beta_meta = None if beta is None else (beta.shape, beta.dtype)
        return y.to(result_dtype(x, gamma, beta))

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, gamma, mean, rstd = ctx.saved_tensors
        need_x, need_gamma, need_beta = ctx.needs_input_grad[:3]
        dx = dgamma = dbeta = None
        if need_beta:
            shape, dtype = ctx.beta_meta
            dbeta = dy.sum_to_size(shape).to(dtype)
        if need_x or need_gamma:
            dy_c = dy.to(mean.dtype)
            x_hat = torch.addcmul(-mean * rstd, x.to(mean.dtype), rstd)
            if need_x:
                dx = _input_grad(ctx, dy_c, x_hat, gamma, rstd).to(x.dtype)
            if need_gamma:
                dgamma = x_hat.mul_(dy_c).sum_to_size(gamma.shape).to(gamma.dtype)
        return dx, dgamma, dbeta, None, None, None, None, None, None, None, None


def _input_grad(ctx, dy: Tensor, x_hat: Tensor, gamma: Tensor | None, rstd: Tensor) -> Tensor:
    g = dy if gamma is None else torch.addcmul(dy, dy, gamma)
    if not ctx.batch_stats:
        return g * rstd
    sum_g = reduce_over_sets(g, ctx.norm, ctx.num_groups)
    sum_gx = reduce_over_sets(g * x_hat, ctx.norm, ctx.num_groups)
    if ctx.norm == "sync_batch" and distributed.is_sync_active(ctx.process_group):
        sum_g, sum_gx = distributed.all_reduce_sum([sum_g, sum_gx], ctx.process_group)
    inv_m = 1.0 / ctx.count
    # dx = rstd * g - rstd * mean_S(g) - rstd * mean_S(g * x_hat) * x_hat
    dx = torch.addcmul(-rstd * sum_g * inv_m, g, rstd)
    return dx.addcmul_(x_hat, rstd * sum_gx * inv_m, value=-1.0)


def update_running_stats(
    running_mean: Tensor,
    running_var: Tensor,
    mean: Tensor,
    var: Tensor,
    count: int,
    momentum: float,
) -> None:
    """In-place ``running = (1 - momentum) * running + momentum * batch`` with the unbiased batch variance."""
    unbiased = var.reshape(-1) * (count / (count - 1)) if count > 1 else var.reshape(-1)
    running_mean.lerp_(mean.reshape(-1).to(running_mean.dtype), momentum)
    running_var.lerp_(unbiased.to(running_var.dtype), momentum)


def modulated_norm(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
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
    """Arguments already validated by :func:`spadenorm.functional.modulated_norm`; gamma/beta have x's rank."""
    if norm == "none":
        out = x if gamma is None else torch.addcmul(x, x, gamma)
        return out if beta is None else out + beta
    update = training and running_mean is not None
    if update and num_batches_tracked is not None:
        num_batches_tracked.add_(1)
    # As torch.nn.BatchNorm: momentum None means a cumulative average, factor 1 / num_batches_tracked.
    factor = momentum if momentum is not None or not update else 1.0 / float(num_batches_tracked)
    return LeanModulatedNorm.apply(
        x, gamma, beta, running_mean, running_var, norm, num_groups, eps, factor or 0.0, training, process_group
    )
