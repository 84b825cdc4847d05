"""The memory-lean PyTorch implementation of normalize-and-modulate (backend ``"torch"``).

``y = (x - mean) * rstd * (1 + gamma) + beta`` with statistics over a reduction set S of size M:

=============  =====================================  ===================================
norm           S for one statistic                     statistics stored (flat, fp32/fp64)
=============  =====================================  ===================================
``instance``   (H, W) of one (n, c)                    N * C
``group``      (C/G, H, W) of one (n, group)           N * G
``layer``      (C, H, W) of one n                      N
``batch``      (N, H, W) of one c                      C
=============  =====================================  ===================================

The autograd function saves only ``x``, ``gamma`` (when given) and the flat ``mean`` and ``rstd``; x-hat is
recomputed in backward. With ``g = dy * (1 + gamma)`` and ``mean_S`` the mean over S:

* ``dx = rstd * (g - mean_S(g) - x_hat * mean_S(g * x_hat))`` for batch statistics,
  ``dx = rstd * g`` for running (constant) statistics;
* ``dgamma = dy * x_hat`` and ``dbeta = dy``, summed over the dimensions where gamma/beta broadcast.

Every statistic is computed by torch's batch-norm kernel, which takes a centred variance: for the per-sample norms on
a (1, N*G, -1) view of x (the trick ``F.instance_norm`` itself uses), so x-hat comes out of the same call.
``native_group_norm`` is not used: on CPU it computes E[x^2] - E[x]^2 and loses digits when |mean| >> std. The
``dx`` formula runs as torch's fused batch-norm backward on the same views. For ``sync_batch`` the statistics are
merged across processes and the two per-channel sums of the ``dx`` formula are all-reduced.
Low-precision inputs are computed in fp32 and the result is rounded once.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import distributed

ROW_NORMS = ("instance", "group", "layer")
BATCH_NORMS = ("batch", "sync_batch")


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


def groups_per_sample(norm: str, num_groups: int | None, num_channels: int) -> int:
    """G: statistics per sample for the row norms (instance: C, layer: 1, group: num_groups)."""
    if norm == "instance":
        return num_channels
    return 1 if norm == "layer" else num_groups


def set_size(x: Tensor, norm: str, num_groups: int | None) -> int:
    """Number of elements M in one reduction set (local to this process)."""
    spatial = math.prod(x.shape[2:])
    if norm in BATCH_NORMS:
        return x.shape[0] * spatial
    return x.shape[1] // groups_per_sample(norm, num_groups, x.shape[1]) * spatial


def broadcast_stats(stat: Tensor, x: Tensor, norm: str, num_groups: int | None) -> Tensor:
    """Flat statistics (C for batch norms, N*G for row norms) -> broadcastable to x: (1, C, 1..) or (N, C, 1..)."""
    ones = (1,) * (x.dim() - 2)
    n, c = x.shape[:2]
    if norm in BATCH_NORMS:
        return stat.view(1, c, *ones)
    if norm == "instance":
        return stat.view(n, c, *ones)
    if norm == "layer":
        return stat.view(n, 1, *ones)
    return stat.view(n, num_groups, 1, *ones).expand(n, num_groups, c // num_groups, *ones).reshape(n, c, *ones)


def sum_over_sets(t: Tensor, norm: str, num_groups: int | None) -> Tensor:
    """Sum of ``t`` (shaped like x) over each reduction set, flat like the statistics."""
    spatial = tuple(range(2, t.dim()))
    if norm in BATCH_NORMS:
        return t.sum((0, *spatial))
    groups = groups_per_sample(norm, num_groups, t.shape[1])
    return t.sum(spatial).reshape(t.shape[0], groups, -1).sum(-1).reshape(-1)


def _rows(t: Tensor, groups: int) -> Tensor:
    """x as (1, N*G, -1): each row one reduction set of a row norm (a view when t is contiguous)."""
    return t.reshape(1, t.shape[0] * groups, -1)


def normalize(x: Tensor, mean: Tensor, rstd: Tensor, norm: str, num_groups: int | None) -> Tensor:
    """x_hat = (x - mean) * rstd from flat statistics, in x's memory format.

    Runs as torch's eval-mode batch-norm kernel with ``weight = rstd``, unit variance and ``eps = 0`` (on x itself for
    batch norms, on the (1, N*G, -1) view for row norms): a per-channel fused multiply-add that is several times
    faster on CPU than the equivalent broadcast ``addcmul`` when H*W is small.
    """
    if norm in BATCH_NORMS:
        return torch.native_batch_norm(x, rstd, None, mean, torch.ones_like(mean), False, 0.0, 0.0)[0]
    if x.is_contiguous():
        rows = _rows(x, groups_per_sample(norm, num_groups, x.shape[1]))
        return torch.native_batch_norm(rows, rstd, None, mean, torch.ones_like(mean), False, 0.0, 0.0)[0].view(x.shape)
    shift = broadcast_stats(-mean * rstd, x, norm, num_groups)
    return torch.addcmul(shift, x, broadcast_stats(rstd, x, norm, num_groups))


def update_running_stats(
    running_mean: Tensor, running_var: Tensor, mean: Tensor, var: Tensor, count: int, momentum: float | Tensor
) -> None:
    """In-place ``running = (1 - momentum) * running + momentum * batch`` with the unbiased batch variance."""
    unbiased = var * (count / (count - 1)) if count > 1 else var
    running_mean.lerp_(mean.to(running_mean.dtype), momentum)
    running_var.lerp_(unbiased.to(running_var.dtype), momentum)


def _batch_statistics(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    momentum: float | Tensor,
    eps: float,
    sync: bool,
    process_group: object,
) -> tuple[Tensor | None, Tensor, Tensor, int]:
    """Training-mode per-channel statistics: (x_hat or None, mean, rstd, count); running statistics updated.

    ``momentum`` is a float, or a 0-d tensor for a cumulative average.
    """
    count = set_size(x, "batch", None)
    native_update = running_mean is None or (running_mean.dtype == x.dtype and not isinstance(momentum, Tensor))
    if not sync and native_update:
        # One native call: statistics, x_hat and torch's own running-statistics update.
        x_hat, mean, rstd = torch.native_batch_norm(x, None, None, running_mean, running_var, True, momentum, eps)
        return x_hat, mean, rstd, count
    # Statistics alone (eps=0, so var = rstd0**-2 up to rounding), then the merge and update done here.
    _, mean, rstd0 = torch.native_batch_norm(x, None, None, None, None, True, 0.0, 0.0)
    var = rstd0.pow(-2)
    if sync:
        mean, var, count = distributed.sync_mean_var(mean, var, count, process_group)
    if running_mean is not None:
        update_running_stats(running_mean, running_var, mean, var, count, momentum)
    return None, mean, torch.rsqrt(var + eps), count


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
        momentum: float | Tensor,
        training: bool,
        process_group: object,
    ) -> Tensor:
        xc = x.to(compute_dtype(x, gamma, beta))
        batch_stats, sync = True, False
        if norm in ROW_NORMS:
            rows = _rows(xc, groups_per_sample(norm, num_groups, x.shape[1]))
            y, mean, rstd = torch.native_batch_norm(rows, None, None, None, None, True, 0.0, eps)
            y = y.view(x.shape) if xc.is_contiguous() else None  # else rows was a copy, in another layout
            count = rows.shape[-1]
        elif training:
            sync = norm == "sync_batch" and distributed.is_sync_active(process_group)
            y, mean, rstd, count = _batch_statistics(xc, running_mean, running_var, momentum, eps, sync, process_group)
        else:
            batch_stats, count, y = False, 0, None
            mean, rstd = running_mean.to(xc.dtype), torch.rsqrt(running_var.to(xc.dtype) + eps)
        if y is None:
            y = normalize(xc, mean, rstd, norm, num_groups)
        if gamma is not None:
            y.addcmul_(y, gamma)
        if beta is not None:
            y.add_(beta)
        ctx.save_for_backward(x, gamma, mean, rstd)
        ctx.norm, ctx.num_groups, ctx.batch_stats, ctx.sync = norm, num_groups, batch_stats, sync
        ctx.count, ctx.process_group = count, process_group
        ctx.beta_meta = None if beta is None else (beta.shape, beta.dtype)
        return y.to(result_dtype(x, gamma, beta))

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor):
        x, gamma, mean, rstd = ctx.saved_tensors
        need_x, need_gamma, need_beta = ctx.needs_input_grad[:3]
        dx = dgamma = dbeta = None
        if need_beta:
            shape, dtype = ctx.beta_meta
            dbeta = dy.sum_to_size(shape).to(dtype)
        if need_x or need_gamma:
            xc, dyc = x.to(mean.dtype), dy.to(mean.dtype)
            x_hat = normalize(xc, mean, rstd, ctx.norm, ctx.num_groups) if need_gamma or ctx.sync else None
            if need_x:
                g = dyc if gamma is None else torch.addcmul(dyc, dyc, gamma)
                dx = _input_grad(ctx, g, xc, x_hat, mean, rstd).to(x.dtype)
            if need_gamma:
                dgamma = x_hat.mul_(dyc).sum_to_size(gamma.shape).to(gamma.dtype)
        return dx, dgamma, dbeta, None, None, None, None, None, None, None, None


def _input_grad(ctx, g: Tensor, x: Tensor, x_hat: Tensor | None, mean: Tensor, rstd: Tensor) -> Tensor:
    """dx from g = dy * (1 + gamma): fused native kernel where the layout allows, else the explicit formula."""
    rstd_b = broadcast_stats(rstd, x, ctx.norm, ctx.num_groups)
    if not ctx.batch_stats:
        return g * rstd_b
    if not ctx.sync:
        if ctx.norm in BATCH_NORMS:
            return torch.ops.aten.native_batch_norm_backward(
                g, x, None, None, None, mean, rstd, True, 0.0, [True, False, False]
            )[0]
        if g.is_contiguous() and x.is_contiguous():
            groups = groups_per_sample(ctx.norm, ctx.num_groups, x.shape[1])
            return torch.ops.aten.native_batch_norm_backward(
                _rows(g, groups), _rows(x, groups), None, None, None, mean, rstd, True, 0.0, [True, False, False]
            )[0].view(x.shape)
    if x_hat is None:
        x_hat = normalize(x, mean, rstd, ctx.norm, ctx.num_groups)
    sum_g = sum_over_sets(g, ctx.norm, ctx.num_groups)
    sum_gx = sum_over_sets(g * x_hat, ctx.norm, ctx.num_groups)
    if ctx.sync:
        sum_g, sum_gx = distributed.all_reduce_sum([sum_g, sum_gx], ctx.process_group)
    inv_m = 1.0 / ctx.count
    mean_g = broadcast_stats(sum_g * inv_m, x, ctx.norm, ctx.num_groups)
    mean_gx = broadcast_stats(sum_gx * inv_m, x, ctx.norm, ctx.num_groups)
    # dx = rstd * g - rstd * mean_S(g) - rstd * mean_S(g * x_hat) * x_hat
    dx = torch.addcmul(-rstd_b * mean_g, g, rstd_b)
    return dx.addcmul_(x_hat, rstd_b * mean_gx, value=-1.0)


def running_factor(
    training: bool, running_mean: Tensor | None, momentum: float | None, num_batches_tracked: Tensor | None
) -> float | Tensor:
    """Count the batch in ``num_batches_tracked`` and return the running-statistics factor, as torch.nn.BatchNorm.

    ``momentum=None`` means a cumulative average, factor ``1 / num_batches_tracked``, returned as a 0-d tensor so
    that torch.compile needs no host read.
    """
    update = training and running_mean is not None
    if update and num_batches_tracked is not None:
        num_batches_tracked.add_(1)
    if update and momentum is None:
        return num_batches_tracked.reciprocal().to(running_mean.dtype)
    return 0.0 if momentum is None else momentum


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
    factor = running_factor(training, running_mean, momentum, num_batches_tracked)
    return LeanModulatedNorm.apply(
        x, gamma, beta, running_mean, running_var, norm, num_groups, eps, factor, training, process_group
    )
