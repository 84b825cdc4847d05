"""Autograd for the fused op: the statistics step, one forward launch, and the backward, with sync-batch's
collectives run here, in Python, between registered ops in both directions.

Notation: ``x_hat = x * rstd + offset`` (``offset = -mean * rstd``), ``z = x_hat * (1 + gamma) + beta``,
``y = z * (1 + scale) + shift``, ``dz = dy * (1 + scale)``, ``g = dz * (1 + gamma)``.

Forward. :func:`statistics` returns, for every norm, either a :class:`RowPlan` (per-sample statistics that the row
kernel computes in the same launch as the output) or :class:`Affine` values, fp32 ``rstd`` and ``offset`` per (n, c)
or per channel: from the partial-statistics kernel merged per reduction set by the finalize kernel (running
estimates updated there), or in torch in float64 (across processes for sync-batch, all-gathered; running estimates
that are not fp32; when the launch overrides ask for it), from the running statistics (eval-mode batch norms), or
the identity (``"none"``). Then exactly one kernel writes y, the second modulation included.

Backward. The row plan launches one kernel for dx, the spatial dgamma/dbeta maps and the per-(n, c) sums of dz,
dz * x_hat, dy and dy * z. Otherwise the sums kernel runs first and the dx kernel pools its partial sums of g and
g * x_hat over each reduction set into the dx coefficients itself (for sync-batch, torch pools and all-reduces them
and gives them to the dx kernel). CLADE's table gradients have a kernel of their own. Saved for backward: x, gamma,
labels, scale, the O(N*C) statistics, and beta only when scale needs a gradient (``d scale = sum dy * z``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ... import _distributed
from ..._core import NormSpec, RunningStats, is_spatial
from . import launch, ops


class RowPlan(NamedTuple):
    """Per-sample statistics computed by the row kernel itself: ``groups`` sets per sample."""

    groups: int


class Affine(NamedTuple):
    """fp32 ``rstd`` and ``offset = -mean * rstd``, (N, C) per sample or (1, C) per channel."""

    rstd: Tensor
    offset: Tensor


def _grad_kind(t: Tensor | None, labels: Tensor | None) -> str:
    """How the gradient of gamma or beta is formed: ``"table"`` (own kernel), ``"map"`` (elementwise), ``"vector"``
    (from the per-(n, c) sums) or ``"none"``."""
    if t is None:
        return "none"
    if labels is not None:
        return "table"
    return "map" if is_spatial(t) else "vector"


def _merge_partials(mean: Tensor, m2: Tensor, span: int, spatial: int, sets: int, batch: bool) -> tuple[Tensor, ...]:
    """Chan-merge (N, C, P) partials over spans of ``span`` positions into ``sets`` reduction sets, in float64.

    Returns the flat mean and biased variance: per channel (C) for batch statistics, else per (n, group) (N * G).
    """
    n, c, parts = mean.shape
    starts = torch.arange(parts, device=mean.device, dtype=torch.float64) * span
    weights = torch.clamp(spatial - starts, max=span).expand(n, c, parts)

    def by_set(t: Tensor) -> Tensor:  # (N, C, P) -> (sets, partials of one set)
        return t.permute(1, 0, 2).reshape(sets, -1) if batch else t.reshape(sets, -1)

    w, mu, sq = by_set(weights), by_set(mean.double()), by_set(m2.double())
    total = w.sum(-1)
    set_mean = (w * mu).sum(-1) / total
    set_m2 = (sq + w * (mu - set_mean[:, None]) ** 2).sum(-1)
    return set_mean, set_m2 / total


def _affine(mean: Tensor, var: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    rstd = torch.rsqrt(var + eps)
    return rstd, -mean * rstd


def statistics(
    x: Tensor,
    spec: NormSpec,
    running: RunningStats | None,
    factor: float | Tensor,
    training: bool,
    tables: bool = False,
) -> RowPlan | Affine:
    """The statistics step of the forward: a plan for the row kernel, or fp32 rstd and offset values.

    ``tables``: the modulation gathers class-table rows (the row kernels' tiles are smaller then).
    """
    n, c = x.shape[:2]
    if spec.norm == "none":
        ones = x.new_ones((1, c), dtype=torch.float32)
        return Affine(ones, torch.zeros_like(ones))
    if not spec.uses_batch_statistics(training):
        assert running is not None  # eval-mode batch norms have running statistics (checked at the edge)
        rstd, offset = _affine(running.mean.float(), running.var.float(), spec.eps)
        return Affine(rstd[None], offset[None])
    groups = c if spec.is_batch else spec.groups_per_sample(c)
    if not spec.is_batch and launch.use_row_kernels(x, groups, tables):
        return RowPlan(groups)
    span = launch.reduction_span(x)
    part_mean, part_m2 = ops.run(ops.partial_stats, x, span)
    spatial = math.prod(x.shape[2:])
    if not _needs_torch_glue(spec, running):
        running_mean, running_var = (running.mean, running.var) if running is not None else (None, None)
        factor_value, factor_tensor = (0.0, factor) if isinstance(factor, Tensor) else (float(factor), None)
        rstd, offset = ops.run(ops.finalize_stats, part_mean, part_m2, span, spatial, groups, spec.is_batch, spec.eps,
                                          running_mean, running_var, factor_value, factor_tensor)  # fmt: skip
        return Affine(rstd, offset)
    mean, var = _merge_partials(part_mean, part_m2, span, spatial, groups if spec.is_batch else n * groups,
                                spec.is_batch)  # fmt: skip
    if not spec.is_batch:
        rstd, offset = _affine(mean, var, spec.eps)
        per_set = torch.stack([rstd, offset]).float().reshape(2, n, groups, 1)
        per_channel = per_set.expand(2, n, groups, c // groups).reshape(2, n, c)
        return Affine(per_channel[0].contiguous(), per_channel[1].contiguous())
    count: int | Tensor = n * spatial
    if spec.norm == "sync_batch" and _distributed.is_sync_active(spec.process_group):
        mean, var, count = _distributed.sync_mean_var(mean, var, n * spatial, spec.process_group)
    if running is not None:
        running.update(mean, var, count, factor)
    rstd, offset = _affine(mean, var, spec.eps)
    return Affine(rstd.float()[None], offset.float()[None])


def _sync_active(spec: NormSpec) -> bool:
    return spec.norm == "sync_batch" and _distributed.is_sync_active(spec.process_group)


def _needs_torch_glue(spec: NormSpec, running: RunningStats | None) -> bool:
    """Whether the split-row statistics are merged in torch: across processes (sync-batch), for running estimates
    the finalize kernel does not update (not fp32 contiguous), or when the launch overrides ask for it."""
    odd_running = running is not None and not all(
        t.dtype == torch.float32 and t.is_contiguous() for t in (running.mean, running.var)
    )
    return _sync_active(spec) or odd_running or launch.uses_torch_glue()


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
        training: bool,
    ) -> Tensor:
        ctx.set_materialize_grads(False)  # no zeros for an unused output: backward returns no gradients then
        stats = statistics(x, spec, running, factor, training, labels is not None)
        if isinstance(stats, RowPlan):
            y, rstd, offset = ops.run(ops.row_forward, x, gamma, beta, labels, scale, shift, stats.groups, spec.eps)
            ctx.row_groups = stats.groups
        else:
            rstd, offset = stats
            y = ops.run(ops.modulate, x, gamma, beta, labels, scale, shift, rstd, offset)
            ctx.row_groups = None
        keep_beta = beta if ctx.needs_input_grad[4] else None  # d scale sums dy * z, and z needs beta
        ctx.save_for_backward(x, gamma, keep_beta, labels, scale, rstd, offset)
        ctx.spec, ctx.from_input = spec, spec.uses_batch_statistics(training)
        ctx.gamma_kind, ctx.beta_kind = _grad_kind(gamma, labels), _grad_kind(beta, labels)
        ctx.meta = [None if t is None else (t.shape, t.dtype) for t in (beta, shift)]
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor | None) -> tuple[Tensor | None, ...]:
        if dy is None:
            return (None,) * 10
        x, gamma, beta, labels, scale, rstd, offset = ctx.saved_tensors
        need_x, need_gamma, need_beta, _, need_scale, need_shift = ctx.needs_input_grad[:6]
        beta_meta, shift_meta = ctx.meta
        gamma_map = need_gamma and ctx.gamma_kind == "map"
        beta_map = need_beta and ctx.beta_kind == "map" and scale is not None  # without a scale, dbeta is dy
        if ctx.row_groups is not None:
            dx, dgamma_map, dbeta_map, sums = ops.run(
                ops.row_backward, dy, x, gamma, beta, labels, scale, rstd, offset, ctx.row_groups, need_x, gamma_map,
                beta_map, need_scale,
            )  # fmt: skip
            per_nc = {"dz": sums[0], "dz_x_hat": sums[1], "dy": sums[2], "dy_z": sums[3]}
        else:
            dx, dgamma_map, dbeta_map, per_nc = _two_phase_backward(
                ctx, dy, x, gamma, beta, labels, scale, rstd, offset, need_x, gamma_map, beta_map, need_scale,
                need_shift,
            )  # fmt: skip
        table_grads = None
        if labels is not None and (need_gamma or need_beta):
            span = launch.reduction_span(x, "_class_table_grad_chunked_kernel")
            table_grads = ops.run(ops.class_table_grads, dy, x, labels, scale, rstd, offset, gamma.shape[0], span)
        dgamma = dbeta = dscale = dshift = None
        if need_gamma:
            dgamma = _modulation_grad(ctx.gamma_kind, 0, table_grads, dgamma_map, per_nc, gamma.shape, gamma.dtype)
        if need_beta:
            shape, dtype = beta_meta
            full = dbeta_map if beta_map else dy
            dbeta = _modulation_grad(ctx.beta_kind, 1, table_grads, full, per_nc, shape, dtype)
        if need_scale:
            dscale = _per_sample_channel_grad(per_nc["dy_z"], scale.shape, scale.dtype)
        if need_shift:
            dshift = _per_sample_channel_grad(per_nc["dy"], *shift_meta)
        return dx if need_x else None, dgamma, dbeta, None, dscale, dshift, None, None, None, None


def _two_phase_backward(
    ctx: Any,
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    rstd: Tensor,
    offset: Tensor,
    need_x: bool,
    gamma_map: bool,
    beta_map: bool,
    need_scale: bool,
    need_shift: bool,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
    """Sums kernel, then the dx kernel, which pools the dx coefficients over each set from the sums' partials
    itself (or, across processes for sync-batch, from coefficients all-reduced here)."""
    spec: NormSpec = ctx.spec
    projected = need_x and ctx.from_input  # dx needs mean(g) and mean(g * x_hat) over each set
    vector_grads = "vector" in (ctx.gamma_kind, ctx.beta_kind) and any(ctx.needs_input_grad[1:3])
    per_nc: dict[str, Tensor] = {}
    coef_x = coef_0 = partials = None
    if projected or vector_grads or need_scale or need_shift:
        span = launch.reduction_span(x, "_backward_sums_kernel")
        partials = ops.run(ops.backward_sums, dy, x, gamma, beta, labels, scale, rstd, offset, span, need_scale)
        pooled_in_torch = projected and (_sync_active(spec) or launch.uses_torch_glue())
        if vector_grads or need_scale or need_shift or pooled_in_torch:
            sums = partials.sum(-1)
            per_nc = {"dz": sums[0], "dz_x_hat": sums[1], "dy": sums[4], "dy_z": sums[5]}
        if pooled_in_torch:
            pooled = _pool_to_sets(sums[2:4], spec)  # sum g, sum g * x_hat over each set, per (n, c)
            count = torch.full_like(pooled[:1], float(spec.set_size(x)))
            pooled = torch.cat([pooled, count])
            if _sync_active(spec):
                (pooled,) = _distributed.all_reduce_sum([pooled], spec.process_group)
            mean_g, mean_gx = pooled[0] / pooled[2], pooled[1] / pooled[2]
            coef_x, coef_0 = (-rstd * mean_gx).contiguous(), (-rstd * mean_g).contiguous()
            partials = None  # the dx kernel takes the coefficients instead
        elif not projected:
            partials = None  # dx needs no coefficients
    dx = dgamma_map = dbeta_map = x.new_empty(0)
    if need_x or gamma_map or beta_map:
        c = x.shape[1]
        pooling = partials is not None  # the dx kernel pools the coefficients from these partials
        group_size = c // spec.groups_per_sample(c) if pooling and not spec.is_batch else 1
        dx, dgamma_map, dbeta_map = ops.run(
            ops.backward_dx, dy, x, gamma, beta, labels, scale, rstd, offset, coef_x, coef_0, partials,
            spec.set_size(x) if pooling else 0, spec.is_batch, group_size, need_x, gamma_map, beta_map,
        )  # fmt: skip
    return dx, dgamma_map, dbeta_map, per_nc


def _pool_to_sets(sums: Tensor, spec: NormSpec) -> Tensor:
    """(k, N, C) per-(n, c) sums -> per-(n, c) sums over each channel's whole reduction set, (k, N|1, C)."""
    k, n, c = sums.shape
    if spec.is_batch:
        return sums.sum(1, keepdim=True)
    groups = spec.groups_per_sample(c)
    per_group = sums.reshape(k, n, groups, c // groups).sum(-1, keepdim=True)
    return per_group.expand(k, n, groups, c // groups).reshape(k, n, c)


def _modulation_grad(
    kind: str,
    index: int,
    table_grads: Tensor | None,
    full_map: Tensor,
    per_nc: dict[str, Tensor],
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
        return full_map.sum_to_size(shape).to(dtype)
    sums = per_nc["dz_x_hat" if index == 0 else "dz"]
    return sums.reshape(sums.shape + (1,) * (len(shape) - 2)).sum_to_size(shape).to(dtype)


def _per_sample_channel_grad(sums: Tensor, shape: torch.Size, dtype: torch.dtype) -> Tensor:
    """(N, C) per-(n, c) sums -> the gradient of an (N, C) or (1, C) scale or shift."""
    return sums.sum_to_size(shape).to(dtype)
