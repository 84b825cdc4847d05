"""The memory-lean PyTorch implementation of normalize-and-modulate (backend ``"torch"``).

``y = ((x - mean) * rstd * (1 + gamma) + beta) * (1 + scale) + shift`` over the reduction sets of
:mod:`spadenorm._core`. The autograd function saves only ``x``, ``gamma`` (when given), ``scale`` and the flat
``mean`` and ``rstd`` (and ``beta`` when scale needs a gradient); x-hat is recomputed in backward. With
``dz = dy * (1 + scale)``, ``g = dz * (1 + gamma)`` and ``mean_S`` the mean over a reduction set S:

* ``dx = rstd * (g - mean_S(g) - x_hat * mean_S(g * x_hat))`` for statistics of x,
  ``dx = rstd * g`` for running (constant) statistics;
* ``dgamma = dz * x_hat`` and ``dbeta = dz``, summed over the dimensions where gamma/beta broadcast;
* ``dscale = sum dy * (x_hat * (1 + gamma) + beta)`` and ``dshift = sum dy`` over space (and over N for per-channel
  tensors), formed from sums, not from that map.

Statistics are centred everywhere, so inputs with |mean| >> std keep their digits. Per-sample statistics of a
contiguous x come from torch's group-norm kernel (G groups per sample: C for instance, 1 for layer), and so do the
batch statistics of a contiguous x (one group per channel, merged over the batch), where that kernel is several
times faster than torch's batch-norm kernel; channels_last batch statistics come from the batch-norm kernel. Both
return x-hat and have fused backward kernels for ``dx``. Other layouts
take two passes over (N*G, -1) rows and the explicit ``dx`` formula, which keeps x's layout; torch's channels_last
group norm is avoided because it computes E[x^2] - E[x]^2. For ``sync_batch`` the statistics are merged across
processes and the two per-channel sums of the ``dx`` formula are all-reduced. Low-precision inputs are computed in
fp32 and the result is rounded once. CLADE's class tables are gathered into per-pixel maps first (:mod:`.class_rows`).
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


def _per_sample_statistics(x: Tensor, spec: NormSpec) -> tuple[Tensor | None, Tensor, Tensor]:
    """Per-sample statistics: (x_hat or None, flat mean, flat rstd), N*G of each.

    A contiguous x goes through torch's group-norm kernel (G groups per sample: C for instance, 1 for layer), which
    computes centred moments (Welford with cascade sums) and x_hat in one call. Other layouts are copied to
    (N*G, M) rows and take two passes, the mean by cascade summation, then the biased variance of the centred row;
    x_hat is then left to :func:`_normalize`, which keeps x's layout. (Torch's channels_last group norm computes
    E[x^2] - E[x]^2 and loses digits when |mean| >> std, so it is not used.)
    """
    n, c = x.shape[:2]
    groups = spec.groups_per_sample(c)
    if x.is_contiguous():
        x_hat, mean, rstd = torch.native_group_norm(x, None, None, n, c, spec.set_size(x) // (c // groups), groups,
                                                    spec.eps)  # fmt: skip
        return x_hat, mean.reshape(-1), rstd.reshape(-1)
    rows = _per_sample_rows(x, spec)[0]
    mean = rows.mean(-1)
    centred = rows - mean[:, None]
    var = torch.linalg.vector_norm(centred, dim=-1).square_().div_(rows.shape[-1])
    return None, mean, torch.rsqrt(var + spec.eps)


class _ProductSums:
    """Sums of elementwise products over space or over reduction sets, through one reused scratch buffer.

    On CPU every activation-sized temporary costs a fresh allocation; the products whose sums backward needs
    (``dy * x_hat * gamma`` and ``dy * beta``) share one buffer instead.
    """

    def __init__(self) -> None:
        self._buffer: Tensor | None = None

    def _product(self, a: Tensor, b: Tensor) -> Tensor:
        if self._buffer is None or self._buffer.shape != a.shape or self._buffer.dtype != a.dtype:
            self._buffer = torch.empty_like(a, memory_format=torch.contiguous_format)
        return torch.mul(a, b, out=self._buffer)

    def over_space(self, a: Tensor, b: Tensor) -> Tensor:
        """(N, C) sums over the spatial positions of ``a * b``: a full map a, b a full map or per-(n, c) or
        per-channel (then no product is formed)."""
        spatial = tuple(range(2, a.dim()))
        b = b.to(a.dtype)
        if any(size != 1 for size in b.shape[2:]):
            return self._product(a, b).sum(spatial)
        return a.sum(spatial) * b.reshape(b.shape[0], b.shape[1])


_MERGED_ROWS_MIN = 1 << 18
_MERGED_ROW_LENGTH_MIN = 64
"""Elements, and positions per (n, c) row, from which an NCHW x with N > 1 takes its batch statistics from merged
rows: measured on CPU, the merge (a few small operations, and x_hat computed in a second pass) costs more than
torch's batch-norm kernel loses below 256K elements, and for rows of 16 positions at 512K."""


def _batch_statistics(
    x: Tensor, spec: NormSpec, running: RunningStats | None, factor: float | Tensor, sync: bool
) -> tuple[Tensor | None, Tensor, Tensor, int | Tensor]:
    """Training-mode per-channel statistics: (x_hat or None, mean, rstd, count); running statistics updated.

    The count is the local set size, or for sync-batch the total over processes as a 0-d tensor (no host read).

    A contiguous (NCHW) x takes them from torch's group-norm kernel with one group per channel, which on CPU is 2 to 7
    times faster than its batch-norm kernel on that layout (whose statistics pass strides through each channel): for
    N = 1 a channel's set is one row, so the call also gives x_hat; for N > 1 (from 256K elements and rows of 64
    positions) the per-(n, c) rows are merged (equal counts: the mean of the means, and the mean of the variances
    plus the variance of the means).
    """
    local = spec.set_size(x)
    count: int | Tensor = local
    n, c = x.shape[:2]
    long_rows = x.numel() >= _MERGED_ROWS_MIN and local // n >= _MERGED_ROW_LENGTH_MIN
    if x.is_contiguous() and (n == 1 or long_rows):
        if n == 1 and not sync:
            x_hat, mean, rstd = torch.native_group_norm(x, None, None, 1, c, local, c, spec.eps)
            mean, rstd = mean.view(c), rstd.view(c)
            if running is not None:  # var = mean(x_hat^2) / rstd^2: no cancellation against eps when var << eps
                var = torch.linalg.vector_norm(x_hat.view(c, local), dim=1).square_().div_(local) / rstd.square()
                running.update(mean, var, count, factor)
            return x_hat, mean, rstd, count
        _, row_mean, row_rstd = torch.native_group_norm(x, None, None, n, c, local // n, c, 0.0)
        mean = row_mean.mean(0)
        var = row_rstd.pow(-2).mean(0).add_((row_mean - mean).square_().mean(0))
    elif not sync and (running is None or (running.mean.dtype == x.dtype and not isinstance(factor, Tensor))):
        # One native call: statistics, x_hat and torch's own running-statistics update.
        mean_buf, var_buf = (None, None) if running is None else (running.mean, running.var)
        x_hat, mean, rstd = torch.native_batch_norm(x, None, None, mean_buf, var_buf, True, float(factor), spec.eps)
        return x_hat, mean, rstd, count
    else:  # statistics alone (eps=0, so var = rstd0**-2 up to rounding), then the merge and update done here
        _, mean, rstd0 = torch.native_batch_norm(x, None, None, None, None, True, 0.0, 0.0)
        var = rstd0.pow(-2)
    if sync:
        mean, var, count = _distributed.sync_mean_var(mean, var, local, spec.process_group)
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
        xc = _as_dtype(x, compute_dtype(x, gamma, beta, scale, shift))
        from_input = spec.uses_batch_statistics(training)
        sync = False
        y: Tensor | None
        count: int | Tensor
        if not spec.is_batch:
            y, mean, rstd = _per_sample_statistics(xc, spec)
            count = spec.set_size(x)
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
        if scale is not None and shift is not None:  # y * (1 + scale) + shift in one pass
            torch.addcmul(_per_sample_channel(shift, x), y, 1 + _per_sample_channel(scale, x), out=y)
        elif scale is not None:
            y.addcmul_(y, _per_sample_channel(scale, x))
        elif shift is not None:
            y.add_(_per_sample_channel(shift, x))
        keep_beta = beta if ctx.needs_input_grad[3] else None
        ctx.save_for_backward(x, gamma, keep_beta, scale, mean, rstd)
        ctx.spec, ctx.from_input, ctx.sync, ctx.count = spec, from_input, sync, count
        ctx.meta = (
            None if beta is None else (beta.shape, beta.dtype),
            None if shift is None else (shift.shape, shift.dtype),
        )
        y = _as_dtype(y, result_dtype(x, gamma, beta, scale, shift))
        if _COPY_OUTPUT_WHEN_COMPILING and torch.compiler.is_compiling():
            y = y.clone()
        return y

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: the backward itself is not differentiable
            return _once_differentiable_backward(ctx, dy)
        return _backward(ctx, dy)


def _backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:
    """The gradients of :class:`TorchModulatedNorm` (see the module docstring)."""
    x, gamma, beta, scale, mean, rstd = ctx.saved_tensors
    need_x, need_gamma, need_beta, need_scale, need_shift = ctx.needs_input_grad[:5]
    (beta_meta, shift_meta), spec = ctx.meta, ctx.spec
    dx = dgamma = dbeta = dscale = dshift = None
    dyc = _as_dtype(dy, mean.dtype)
    a = None if scale is None else 1 + _per_sample_channel(scale.to(mean.dtype), x)
    dz = dyc if a is None else dyc * a  # dL / d(x_hat * (1 + gamma) + beta)
    if need_shift:
        dshift = dy.sum_to_size(shift_meta[0][:2] + (1,) * (x.dim() - 2)).reshape(shift_meta[0])
        dshift = dshift.to(shift_meta[1])
    if need_beta:
        dbeta = _reduced(dz, *beta_meta)
    if not (need_x or need_gamma or need_scale):
        return dx, dgamma, dbeta, dscale, dshift, None, None, None, None
    xc = _as_dtype(x, mean.dtype)
    x_hat = _normalize(xc, mean, rstd, spec) if need_gamma or need_scale or ctx.sync else None
    dy_x_hat, sums = None, _ProductSums()
    if need_scale:  # sum over space of dy * (x_hat * (1 + gamma) + beta), without forming that map
        assert x_hat is not None
        dy_x_hat, sums = x_hat * dyc, _ProductSums()
        per_nc = dy_x_hat.sum(tuple(range(2, x.dim())))
        if gamma is not None:
            per_nc = per_nc + sums.over_space(dy_x_hat, gamma)
        if beta is not None:
            per_nc = per_nc + sums.over_space(dyc, beta)
        dscale = per_nc.sum_to_size(scale.shape).to(scale.dtype)
    g = (dz if gamma is None else torch.addcmul(dz, dz, gamma)) if need_x else None
    fused = g is not None and _fused_input_grad(ctx, g, xc)  # dx from torch's fused norm backward: no x_hat there
    if need_gamma and (fused or g is None):  # dz * x_hat now, while x_hat is in cache (reusing its buffer)
        dgamma = _gamma_grad(x_hat, dz, dy_x_hat, a, gamma)
    if g is not None:
        dx = _as_dtype(_input_grad(ctx, g, xc, x_hat, mean, rstd), x.dtype)
    if need_gamma and dgamma is None:
        dgamma = _gamma_grad(x_hat, dz, dy_x_hat, a, gamma)
    return dx, dgamma, dbeta, dscale, dshift, None, None, None, None


_once_differentiable_backward = once_differentiable(_backward)


def _as_dtype(t: Tensor, dtype: torch.dtype) -> Tensor:
    return t if t.dtype == dtype else t.to(dtype)


def _reduced(t: Tensor, shape: torch.Size, dtype: torch.dtype) -> Tensor:
    """``t`` summed to ``shape`` (where gamma or beta broadcast) in ``dtype``; t itself where nothing changes."""
    return _as_dtype(t if t.shape == shape else t.sum_to_size(shape), dtype)


def _gamma_grad(x_hat: Tensor | None, dz: Tensor, dy_x_hat: Tensor | None, a: Tensor | None, gamma: Tensor) -> Tensor:
    """dgamma = sum of dz * x_hat where gamma broadcasts; x_hat's (or dy * x_hat's) buffer is reused."""
    assert x_hat is not None
    dgamma_map = x_hat.mul_(dz) if dy_x_hat is None else (dy_x_hat if a is None else dy_x_hat.mul_(a))
    return _reduced(dgamma_map, gamma.shape, gamma.dtype)


def _fused_input_grad(ctx: Any, g: Tensor, x: Tensor) -> bool:
    """Whether :func:`_input_grad` takes dx from torch's fused batch-norm or group-norm backward, or from the
    running statistics: no x_hat needed."""
    spec: NormSpec = ctx.spec
    if not ctx.from_input:
        return True
    if ctx.sync:
        return False
    return spec.is_batch or (g.is_contiguous() and x.is_contiguous())


def _input_grad(ctx: Any, g: Tensor, x: Tensor, x_hat: Tensor | None, mean: Tensor, rstd: Tensor) -> Tensor:
    """dx from g = dz * (1 + gamma): torch's fused batch-norm or group-norm backward where the layout allows, else
    the explicit formula (sync-batch, other layouts)."""
    spec: NormSpec = ctx.spec
    if not ctx.from_input:
        return g * _broadcast_stats(rstd, x, spec)
    if not ctx.sync and spec.is_batch:
        return torch.ops.aten.native_batch_norm_backward(
            g, x, None, None, None, mean, rstd, True, 0.0, [True, False, False]
        )[0]
    if not spec.is_batch and g.is_contiguous() and x.is_contiguous():
        n, c = x.shape[:2]
        groups = spec.groups_per_sample(c)
        stats = mean.view(n, groups), rstd.view(n, groups)
        return torch.ops.aten.native_group_norm_backward(
            g, x, *stats, None, n, c, ctx.count // (c // groups), groups, [True, False, False]
        )[0]
    if x_hat is None:
        x_hat = _normalize(x, mean, rstd, spec)
    rstd_b = _broadcast_stats(rstd, x, spec)
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
