"""The memory-lean PyTorch implementation of normalize-and-modulate (backend ``"torch"``).

``y = (x - mean) * rstd * (1 + gamma) + beta`` over the reduction sets of :mod:`spadenorm._core`. The autograd
function saves only ``x``, ``gamma`` (when given) and the flat ``mean`` and ``rstd``; x-hat is recomputed in backward.
With ``g = dy * (1 + gamma)`` and ``mean_S`` the mean over a reduction set S:

* ``dx = rstd * (g - mean_S(g) - x_hat * mean_S(g * x_hat))`` for statistics of x,
  ``dx = rstd * g`` for running (constant) statistics;
* ``dgamma = dy * x_hat`` and ``dbeta = dy``, summed over the dimensions where gamma/beta broadcast.

Every statistic is computed by torch's batch-norm kernel, which takes a centred variance: for the per-sample norms on
a (1, N*G, -1) view of x (the trick ``F.instance_norm`` itself uses), so x-hat comes out of the same call.
``native_group_norm`` is not used: on CPU it computes E[x^2] - E[x]^2 and loses digits when |mean| >> std. The
``dx`` formula runs as torch's fused batch-norm backward on the same views. For ``sync_batch`` the statistics are
merged across processes and the two per-channel sums of the ``dx`` formula are all-reduced.
Low-precision inputs are computed in fp32 and the result is rounded once. CLADE's class tables are gathered into
per-pixel maps first (:mod:`.class_rows`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .. import _distributed
from .._core import Modulation, NormSpec, RunningStats, compute_dtype, result_dtype
from .class_rows import class_rows

__all__ = ["modulated_norm"]

# AOTAutograd before torch 2.13 (seen with 2.11) returns a zero dx through this Function under torch.compile when
# its output is a kernel's output modified in place or a view of one; a copy of the output avoids that.
_COPY_OUTPUT_WHEN_COMPILING = tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 13)


def _broadcast_stats(stat: Tensor, x: Tensor, spec: NormSpec) -> Tensor:
    """Flat statistics (C for batch norms, N*G per sample) -> broadcastable to x: (1, C, 1..) or (N, C, 1..)."""
    ones = (1,) * (x.dim() - 2)
    n, c = x.shape[:2]
    if spec.is_batch:
        return stat.view(1, c, *ones)
    groups = spec.groups_per_sample(c)
    return stat.view(n, groups, 1, *ones).expand(n, groups, c // groups, *ones).reshape(n, c, *ones)


def _sum_over_sets(t: Tensor, spec: NormSpec) -> Tensor:
    """Sum of ``t`` (shaped like x) over each reduction set, flat like the statistics."""
    spatial = tuple(range(2, t.dim()))
    if spec.is_batch:
        return t.sum((0, *spatial))
    groups = spec.groups_per_sample(t.shape[1])
    return t.sum(spatial).reshape(t.shape[0], groups, -1).sum(-1).reshape(-1)


def _per_sample_rows(t: Tensor, spec: NormSpec) -> Tensor:
    """x as (1, N*G, -1): each row one reduction set of a per-sample norm (a view when t is contiguous)."""
    return t.reshape(1, t.shape[0] * spec.groups_per_sample(t.shape[1]), -1)


def _normalize(x: Tensor, mean: Tensor, rstd: Tensor, spec: NormSpec) -> Tensor:
    """x_hat = (x - mean) * rstd from flat statistics, in x's memory format.

    Runs as torch's eval-mode batch-norm kernel with ``weight = rstd``, unit variance and ``eps = 0`` (on x itself for
    batch norms, on the (1, N*G, -1) view for per-sample norms): a per-channel fused multiply-add that is several
    times faster on CPU than the equivalent broadcast ``addcmul`` when H*W is small.
    """
    unit = torch.ones_like(mean)
    if spec.is_batch:
        return torch.native_batch_norm(x, rstd, None, mean, unit, False, 0.0, 0.0)[0]
    if x.is_contiguous():
        rows = _per_sample_rows(x, spec)
        return torch.native_batch_norm(rows, rstd, None, mean, unit, False, 0.0, 0.0)[0].view(x.shape)
    shift = _broadcast_stats(-mean * rstd, x, spec)
    return torch.addcmul(shift, x, _broadcast_stats(rstd, x, spec))


def _batch_statistics(
    x: Tensor, spec: NormSpec, running: RunningStats | None, factor: float | Tensor, sync: bool
) -> tuple[Tensor | None, Tensor, Tensor, int]:
    """Training-mode per-channel statistics: (x_hat or None, mean, rstd, count); running statistics updated."""
    count = spec.set_size(x)
    if not sync and (running is None or (running.mean.dtype == x.dtype and not isinstance(factor, Tensor))):
        # One native call: statistics, x_hat and torch's own running-statistics update.
        mean_buf, var_buf = (None, None) if running is None else (running.mean, running.var)
        x_hat, mean, rstd = torch.native_batch_norm(x, None, None, mean_buf, var_buf, True, float(factor), spec.eps)
        return x_hat, mean, rstd, count
    # Statistics alone (eps=0, so var = rstd0**-2 up to rounding), then the merge and update done here.
    _, mean, rstd0 = torch.native_batch_norm(x, None, None, None, None, True, 0.0, 0.0)
    var = rstd0.pow(-2)
    if sync:
        mean, var, count = _distributed.sync_mean_var(mean, var, count, spec.process_group)
    if running is not None:
        running.update(mean, var, count, factor)
    return None, mean, torch.rsqrt(var + spec.eps), count


def _per_sample_channel(t: Tensor, x: Tensor) -> Tensor:
    """An (N, C) or (1, C) scale/shift viewed with x's rank: (N|1, C, 1, ...)."""
    return t.view(t.shape + (1,) * (x.dim() - 2))


class TorchModulatedNorm(torch.autograd.Function):
    """Autograd function for ``((x - mean) * rstd * (1 + gamma) + beta) * (1 + scale) + shift``; see the module
    docstring. Running statistics are updated in place inside ``forward`` (batch norms in training).

    Saved for backward: x, gamma, the fp32 (or fp64) statistics, scale, and beta only when scale needs a gradient
    (``d scale`` sums ``dy * z`` with ``z = x_hat * (1 + gamma) + beta``).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        gamma: Tensor | None,
        beta: Tensor | None,
        scale: Tensor | None,
        shift: Tensor | None,
        spec: NormSpec,
        running: RunningStats | None,
        factor: float | Tensor,
        training: bool,
    ) -> Tensor:
        xc = x.to(compute_dtype(x, gamma, beta, scale, shift))
        from_input = spec.uses_batch_statistics(training)
        sync = False
        y: Tensor | None
        if not spec.is_batch:
            rows = _per_sample_rows(xc, spec)
            y, mean, rstd = torch.native_batch_norm(rows, None, None, None, None, True, 0.0, spec.eps)
            y = y.view(x.shape) if xc.is_contiguous() else None  # else rows was a copy, in another layout
            count = rows.shape[-1]
        elif from_input:
            sync = spec.norm == "sync_batch" and _distributed.is_sync_active(spec.process_group)
            y, mean, rstd, count = _batch_statistics(xc, spec, running, factor, sync)
        else:
            assert running is not None  # eval-mode batch norms have running statistics (checked at the edge)
            y, count = None, 0
            mean, rstd = running.mean.to(xc.dtype), torch.rsqrt(running.var.to(xc.dtype) + spec.eps)
        if y is None:
            y = _normalize(xc, mean, rstd, spec)
        if gamma is not None:
            y.addcmul_(y, gamma)
        if beta is not None:
            y.add_(beta)
        if scale is not None:
            y.addcmul_(y, _per_sample_channel(scale, x))
        if shift is not None:
            y.add_(_per_sample_channel(shift, x))
        keep_beta = beta if ctx.needs_input_grad[3] else None
        ctx.save_for_backward(x, gamma, keep_beta, scale, mean, rstd)
        ctx.spec, ctx.from_input, ctx.sync, ctx.count = spec, from_input, sync, count
        ctx.meta = [None if t is None else (t.shape, t.dtype) for t in (beta, shift)]
        y = y.to(result_dtype(x, gamma, beta, scale, shift))
        if _COPY_OUTPUT_WHEN_COMPILING and torch.compiler.is_compiling():
            y = y.clone()
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:
        x, gamma, beta, scale, mean, rstd = ctx.saved_tensors
        need_x, need_gamma, need_beta, need_scale, need_shift = ctx.needs_input_grad[:5]
        (beta_meta, shift_meta), spec = ctx.meta, ctx.spec
        dx = dgamma = dbeta = dscale = dshift = None
        dyc = dy.to(mean.dtype)
        dz = dyc if scale is None else dyc * (1 + _per_sample_channel(scale.to(mean.dtype), x))  # dL / d(modulated)
        if need_shift:
            dshift = dy.sum_to_size(shift_meta[0][:2] + (1,) * (x.dim() - 2)).reshape(shift_meta[0])
            dshift = dshift.to(shift_meta[1])
        if need_beta:
            dbeta = dz.sum_to_size(beta_meta[0]).to(beta_meta[1])
        if need_x or need_gamma or need_scale:
            xc = x.to(mean.dtype)
            x_hat = _normalize(xc, mean, rstd, spec) if need_gamma or need_scale or ctx.sync else None
            if need_x:
                g = dz if gamma is None else torch.addcmul(dz, dz, gamma)
                dx = _input_grad(ctx, g, xc, x_hat, mean, rstd).to(x.dtype)
            if need_scale:
                assert x_hat is not None  # computed above whenever scale needs a gradient
                z = x_hat if gamma is None else torch.addcmul(x_hat, x_hat, gamma)
                z = z if beta is None else z.add_(beta)
                per_nc = z.mul_(dyc).sum_to_size(scale.shape + (1,) * (x.dim() - 2))
                dscale = per_nc.reshape(scale.shape).to(scale.dtype)
            if need_gamma:
                assert x_hat is not None  # computed above whenever gamma needs a gradient
                dgamma = x_hat.mul_(dz).sum_to_size(gamma.shape).to(gamma.dtype)
        return dx, dgamma, dbeta, dscale, dshift, None, None, None, None


def _input_grad(ctx: Any, g: Tensor, x: Tensor, x_hat: Tensor | None, mean: Tensor, rstd: Tensor) -> Tensor:
    """dx from g = dy * (1 + gamma): fused native kernel where the layout allows, else the explicit formula."""
    spec: NormSpec = ctx.spec
    rstd_b = _broadcast_stats(rstd, x, spec)
    if not ctx.from_input:
        return g * rstd_b
    if not ctx.sync:
        grad_input_only = [True, False, False]
        if spec.is_batch:
            return torch.ops.aten.native_batch_norm_backward(
                g, x, None, None, None, mean, rstd, True, 0.0, grad_input_only
            )[0]
        if g.is_contiguous() and x.is_contiguous():
            g_rows, x_rows = _per_sample_rows(g, spec), _per_sample_rows(x, spec)
            return torch.ops.aten.native_batch_norm_backward(
                g_rows, x_rows, None, None, None, mean, rstd, True, 0.0, grad_input_only
            )[0].view(x.shape)
    if x_hat is None:
        x_hat = _normalize(x, mean, rstd, spec)
    sum_g = _sum_over_sets(g, spec)
    sum_gx = _sum_over_sets(g * x_hat, spec)
    if ctx.sync:
        sum_g, sum_gx = _distributed.all_reduce_sum([sum_g, sum_gx], spec.process_group)
    inv_m = 1.0 / ctx.count
    mean_g = _broadcast_stats(sum_g * inv_m, x, spec)
    mean_gx = _broadcast_stats(sum_gx * inv_m, x, spec)
    # dx = rstd * g - rstd * mean_S(g) - rstd * mean_S(g * x_hat) * x_hat
    dx = torch.addcmul(-rstd_b * mean_g, g, rstd_b)
    return dx.addcmul_(x_hat, rstd_b * mean_gx, value=-1.0)


def modulated_norm(x: Tensor, mod: Modulation, spec: NormSpec, running: RunningStats | None, training: bool) -> Tensor:
    """The op on resolved arguments (see :func:`spadenorm._backend.modulated_norm`)."""
    gamma, beta, labels, scale, shift = mod
    if labels is not None:  # (K, C) tables -> per-pixel (N, *spatial, C) rows, viewed channels-first
        gamma = None if gamma is None else class_rows(gamma, labels).movedim(-1, 1)
        beta = None if beta is None else class_rows(beta, labels).movedim(-1, 1)
    if spec.norm == "none":
        out = x if gamma is None else torch.addcmul(x, x, gamma)
        out = out if beta is None else out + beta
        out = out if scale is None else torch.addcmul(out, out, _per_sample_channel(scale, x))
        return out if shift is None else out + _per_sample_channel(shift, x)
    factor = running.count_batch() if running is not None and training else 0.0
    return TorchModulatedNorm.apply(x, gamma, beta, scale, shift, spec, running, factor, training)
