"""Autograd for the fused op: the forward and backward of a call as its :class:`.plan.CallPlan` says, with
sync-batch's collectives run here, in Python, between registered ops in both directions.

Notation: ``x_hat = x * rstd + offset`` (``offset = -mean * rstd``), ``z = x_hat * (1 + gamma) + beta``,
``y = z * (1 + scale) + shift``, ``dz = dy * (1 + scale)``, ``g = dz * (1 + gamma)``. The statistics are one fp32
(2, N or 1, C) tensor of ``rstd`` and ``offset``.

Forward. The row strategies compute the per-sample statistics and write y in one launch (``row_forward``). ``SPLIT``
takes partial moments over spans of S (``partial_stats``) and merges them per reduction set with the finalize kernel
(running estimates updated there), or, for sync-batch across processes, in torch in float64 and all-gathered;
``GIVEN`` takes the running estimates (eval-mode batch norms) or the identity (``"none"``). Then one kernel writes
y, the second modulation included (``modulate``).

Backward. A row strategy launches one kernel for dx, the spatial dgamma/dbeta maps and the per-(n, c) sums of dz,
dz * x_hat, dy and dy * z. Otherwise the sums kernel runs first and the dx kernel pools its partial sums of g and
g * x_hat over each reduction set into the dx coefficients itself (for sync-batch across processes, torch pools and
all-reduces them and gives them to the dx kernel). CLADE's table gradients have a kernel of their own. Saved for
backward: x, gamma, labels, scale, the statistics, and beta only when scale needs a gradient (``d scale = sum dy * z``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ... import _distributed
from ..._core import NormSpec, RunningStats
from . import ops
from .kernels.common import Strategy
from .plan import CallPlan, Launch
from .prepared import PreparedCall

ROWS = (Strategy.RESIDENT, Strategy.SWEPT, Strategy.PERSISTENT)


class _PerChannelSums:
    """The per-(n, c) sums of dz, dz * x_hat, dy and dy * z, as planes ``planes`` of ``sums`` (read when needed)."""

    NAMES = ("dz", "dz_x_hat", "dy", "dy_z")

    def __init__(self, sums: Tensor | None, planes: tuple[int, ...]) -> None:
        self.sums, self.planes = sums, planes

    def __getitem__(self, name: str) -> Tensor:
        assert self.sums is not None
        return self.sums[self.planes[self.NAMES.index(name)]]


def _sync_active(spec: NormSpec) -> bool:
    return spec.norm == "sync_batch" and _distributed.is_sync_active(spec.process_group)


def _guard(direct: bool, x: Tensor) -> contextlib.AbstractContextManager[Any]:
    """One device guard for every direct launch of a call (registered ops guard themselves)."""
    return ops.device_guard(x) if direct else ops.NO_GUARD


def _as_stats(rstd: Tensor, offset: Tensor) -> Tensor:
    return torch.stack([rstd.float(), offset.float()])


def statistics(x: Tensor, spec: NormSpec, running: RunningStats | None, factor: float | Tensor, plan: CallPlan,
               direct: bool) -> Tensor:  # fmt: skip
    """The fp32 (2, N or 1, C) statistics of a ``SPLIT`` or ``GIVEN`` plan (running estimates updated)."""
    c = x.shape[1]
    if plan.strategy == Strategy.GIVEN:
        if spec.norm == "none":
            return _as_stats(x.new_ones((1, c)), x.new_zeros((1, c)))
        assert running is not None  # eval-mode batch norms have running statistics (checked at the edge)
        rstd = torch.rsqrt(running.var.float() + spec.eps)
        return _as_stats(rstd[None], -running.mean.float()[None] * rstd)
    partial, finalize, _ = plan.forward
    moments = ops.call(ops.partial_stats, direct, x, _arg(partial, direct))
    spatial = x[0, 0].numel()
    if not _sync_active(spec):
        running_mean, running_var = (running.mean, running.var) if running is not None else (None, None)
        factor_value, factor_tensor = (0.0, factor) if isinstance(factor, Tensor) else (float(factor), None)
        return ops.call(ops.finalize_stats, direct, moments, running_mean, running_var, factor_tensor, factor_value,
                        spec.eps, spatial, spec.is_batch, _arg(finalize, direct))  # fmt: skip
    mean, var = _merge_partials(moments, partial.span, spatial)
    mean, var, count = _distributed.sync_mean_var(mean, var, x.shape[0] * spatial, spec.process_group)
    if running is not None:
        running.update(mean, var, count, factor)
    rstd = torch.rsqrt(var + spec.eps)
    return _as_stats(rstd[None], (-mean * rstd)[None])


def _merge_partials(moments: Tensor, span: int, spatial: int) -> tuple[Tensor, Tensor]:
    """Chan-merge (2, N, C, P) partial means and M2 over spans of ``span`` positions into per-channel batch sets, in
    float64: the mean and biased variance (C,)."""
    _, n, c, parts = moments.shape
    starts = torch.arange(parts, device=moments.device, dtype=torch.float64) * span
    weights = torch.clamp(spatial - starts, max=span).expand(c, n, parts).reshape(c, -1)
    mu, sq = (t.double().permute(1, 0, 2).reshape(c, -1) for t in moments)
    total = weights.sum(-1)
    mean = (weights * mu).sum(-1) / total
    return mean, (sq + weights * (mu - mean[:, None]) ** 2).sum(-1) / total


def forward(x: Tensor, gamma: Tensor | None, beta: Tensor | None, labels: Tensor | None, scale: Tensor | None,
            shift: Tensor | None, spec: NormSpec, running: RunningStats | None, factor: float | Tensor,
            call: PreparedCall) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``(y, stats)`` of a call, launched as its plan says."""
    direct, plan = call.direct, call.plan
    with _guard(direct, x):
        if plan.strategy in ROWS:
            if direct:
                return call.row_forward(x, gamma, beta, labels, scale, shift, spec.eps)
            return ops.row_forward(x, gamma, beta, labels, scale, shift, spec.eps, list(plan.forward[0]))
        stats = statistics(x, spec, running, factor, plan, direct)
        y = ops.call(ops.modulate, direct, x, gamma, beta, labels, scale, shift, stats, _arg(plan.forward[-1], direct))
        return y, stats


def _arg(launch: Launch, direct: bool) -> Any:
    """A launch as an op argument: as it is for a direct call, a list through the dispatcher."""
    return launch if direct else list(launch)


class TritonModulatedNorm(torch.autograd.Function):
    """Autograd function of the fused op; running statistics are updated in place inside ``forward``."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        gamma: Tensor | None,
        beta: Tensor | None,
        labels: Tensor | None,
        scale: Tensor | None,
        shift: Tensor | None,
        spec: NormSpec,
        running: RunningStats | None,
        factor: float | Tensor,
        call: PreparedCall,
    ) -> Tensor:
        ctx.set_materialize_grads(False)  # no zeros for an unused output: backward returns no gradients then
        y, stats = forward(x, gamma, beta, labels, scale, shift, spec, running, factor, call)
        keep_beta = beta if ctx.needs_input_grad[4] else None  # d scale sums dy * z, and z needs beta
        ctx.save_for_backward(x, gamma, keep_beta, labels, scale, stats)
        ctx.call = (spec, call, None if beta is None else (beta.shape, beta.dtype), None if shift is None else (
            shift.shape, shift.dtype))  # fmt: skip
        return y

    @staticmethod
    def backward(ctx: Any, dy: Tensor | None) -> tuple[Tensor | None, ...]:
        if dy is None:
            return (None,) * 10
        if torch.is_grad_enabled():  # create_graph=True: the backward itself is not differentiable
            return _once_differentiable_backward(ctx, dy)
        return _backward(ctx, dy)


def _backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:
    """The gradients of a call, launched as its plan's backward says (see the module docstring)."""
    x, gamma, beta, labels, scale, stats = ctx.saved_tensors
    need_x, need_gamma, need_beta, _, need_scale, need_shift = ctx.needs_input_grad[:6]
    _, call, beta_meta, shift_meta = ctx.call
    plan, gamma_kind, beta_kind = call.plan, call.gamma_kind, call.beta_kind
    gamma_map = need_gamma and gamma_kind == "map"
    beta_map = need_beta and beta_kind == "map" and scale is not None  # without a scale, dbeta is dy
    direct = ops.eager(dy, x, gamma, beta, labels, scale)
    with _guard(direct, x):
        if plan.backward_strategy in ROWS:
            dx, dgamma_map, dbeta_map, sums = ops.call(
                ops.row_backward, direct, dy, x, gamma, beta, labels, scale, stats, need_x, gamma_map, beta_map,
                need_scale, _arg(plan.backward[0], direct),
            )  # fmt: skip
            per_nc = _PerChannelSums(sums, (0, 1, 2, 3))
        else:
            dx, dgamma_map, dbeta_map, per_nc = _split_backward(
                ctx, direct, dy, x, gamma, beta, labels, scale, stats, need_x, gamma_map, beta_map,
                (gamma_kind, beta_kind),
            )  # fmt: skip
        table_grads = None
        if labels is not None and (need_gamma or need_beta):
            assert plan.table_grad is not None
            table_grads = ops.call(ops.class_table_grads, direct, dy, x, labels, scale, stats, gamma.shape[0],
                                   _arg(plan.table_grad, direct))  # fmt: skip
    dgamma = dbeta = dscale = dshift = None
    if need_gamma:
        dgamma = _modulation_grad(gamma_kind, 0, table_grads, dgamma_map, per_nc, gamma.shape, gamma.dtype)
    if need_beta:
        dbeta = _modulation_grad(beta_kind, 1, table_grads, dbeta_map if beta_map else dy, per_nc, *beta_meta)
    if need_scale:
        dscale = per_nc["dy_z"].sum_to_size(scale.shape).to(scale.dtype)
    if need_shift:
        dshift = per_nc["dy"].sum_to_size(shift_meta[0]).to(shift_meta[1])
    return dx if need_x else None, dgamma, dbeta, None, dscale, dshift, None, None, None, None


_once_differentiable_backward = once_differentiable(_backward)


def _split_backward(
    ctx: Any,
    direct: bool,
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    stats: Tensor,
    need_x: bool,
    gamma_map: bool,
    beta_map: bool,
    kinds: tuple[str, str],
) -> tuple[Tensor, Tensor, Tensor, _PerChannelSums]:
    """Sums kernel, then the dx kernel, which pools the dx coefficients over each set from the sums' partials
    itself (or, across processes for sync-batch, from coefficients all-reduced here)."""
    spec, call = ctx.call[:2]
    plan = call.plan
    sums_launch, dx_launch = plan.backward
    need_scale, need_shift = ctx.needs_input_grad[4:6]
    projected = need_x and plan.backward_strategy == Strategy.SPLIT  # dx needs mean(g), mean(g * x_hat) per set
    vector_grads = any(kind == "vector" and need for kind, need in zip(kinds, ctx.needs_input_grad[1:3], strict=True))
    per_nc = _PerChannelSums(None, ())
    coef = partials = None
    if projected or vector_grads or need_scale or need_shift:
        partials = ops.call(ops.backward_sums, direct, dy, x, gamma, beta, labels, scale, stats, need_scale,
                            _arg(sums_launch, direct))  # fmt: skip
        pooled_in_torch = projected and _sync_active(spec)
        if vector_grads or need_scale or need_shift or pooled_in_torch:
            sums = partials.sum(-1)
            per_nc = _PerChannelSums(sums, (0, 1, 4, 5))
        if pooled_in_torch:
            pooled = torch.cat([sums[2:4].sum(1, keepdim=True), sums.new_full((1, 1, x.shape[1]), spec.set_size(x))])
            (pooled,) = _distributed.all_reduce_sum([pooled], spec.process_group)
            coef = -stats[:1] * torch.stack([pooled[1] / pooled[2], pooled[0] / pooled[2]])  # coef_x, coef_0
            partials = None  # the dx kernel takes the coefficients instead
        elif not projected:
            partials = None  # dx needs no coefficients
    dx = dgamma_map = dbeta_map = x.new_empty(0)
    if need_x or gamma_map or beta_map:
        dx, dgamma_map, dbeta_map = ops.call(
            ops.backward_dx, direct, dy, x, gamma, beta, labels, scale, stats, coef, partials, spec.is_batch, need_x,
            gamma_map, beta_map, _arg(dx_launch, direct),
        )  # fmt: skip
    return dx, dgamma_map, dbeta_map, per_nc


def _modulation_grad(
    kind: str,
    index: int,
    table_grads: Tensor | None,
    full_map: Tensor,
    per_nc: _PerChannelSums,
    shape: torch.Size,
    dtype: torch.dtype,
) -> Tensor:
    """The gradient of gamma (``index`` 0: from dz * x_hat) or beta (1: from dz) in its own shape and dtype.

    ``full_map`` is dz * x_hat (gamma) or dz (beta) as a full map; ``per_nc`` holds their per-(n, c) sums.
    """
    if kind == "table":
        assert table_grads is not None
        return table_grads[index].to(dtype)
    if kind == "map":
        grad = full_map if full_map.shape == shape else full_map.sum_to_size(shape)
        return grad if grad.dtype == dtype else grad.to(dtype)
    sums = per_nc["dz_x_hat" if index == 0 else "dz"]
    return sums.reshape(sums.shape + (1,) * (len(shape) - 2)).sum_to_size(shape).to(dtype)
