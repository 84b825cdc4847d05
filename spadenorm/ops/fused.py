"""The fused normalize-and-modulate op: launchers, ``torch.library`` registration and autograd.

Three registered ops, opaque to ``torch.compile`` (explicit allocation-only fakes with the real strides):

* ``spadenorm::partial_stats(x)``: per-(n, c) partial mean and M2 over spans of S. :func:`statistics` merges them
  per reduction set in torch, all-reduces them for sync-batch, updates running statistics and returns fp32
  ``scale = rstd`` and ``shift = -mean * rstd`` per (n, c) (shape (N, C), or (1, C) for batch statistics).
* ``spadenorm::fused_modulate(x, gamma, beta, labels, scale, shift, ...)``: ``y``, with a registered autograd
  formula that calls
* ``spadenorm::fused_norm_bwd``, returning ``(dx, dgamma_map, nc_sums, table_grads)``; the formula reduces them to
  the shapes of gamma and beta.

gamma/beta are strided tensors of x's rank (full maps, per-(n, c) or per-channel vectors) or, when ``labels`` is
given, (K, C) class tables (gamma already offset by -1: the kernel scales by ``1 + gamma``). Saved for backward:
x, gamma, labels and the O(N*C) scale and shift.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from .. import _eager, distributed
from . import backward as bwd_kernels
from .forward import NONE, TABLE, TENSOR, _modulate_fwd_kernel
from .layout import (
    TARGET_PROGRAMS_GPU,
    Strides3,
    Tiling,
    as_flattenable,
    is_spatial,
    next_pow2,
    strides3,
    tiling,
    triton_cdiv,
)
from .rows import _row_bwd_kernel, _row_fwd_kernel
from .statistics import merge_partials, partial_stats, span_counts

_ROW_NORMS, _BATCH_NORMS = _eager.ROW_NORMS, _eager.BATCH_NORMS
# Tests set these: several partial spans per row under the interpreter; the row-persistent kernels on or off.
MAX_SPAN: list[int | None] = [None]
USE_ROW_KERNELS: list[bool | None] = [None]
_PROCESS_GROUPS: dict[str, object] = {}


def _interpreter() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def register_process_group(process_group: object) -> str:
    """A name under which the registered op (whose schema cannot carry a ProcessGroup) finds ``process_group``."""
    if process_group is None:
        return ""
    name = f"pg{id(process_group)}"
    _PROCESS_GROUPS[name] = process_group
    return name


def _process_group(name: str) -> object:
    return _PROCESS_GROUPS.get(name) if name else None


def _labels_strides(labels: Tensor | None) -> tuple[int, int]:
    if labels is None:
        return 0, 0
    flat = labels.reshape(labels.shape[0], -1)
    return flat.stride(0), flat.stride(1)


def _mod_kind(t: Tensor | None, labels: Tensor | None) -> int:
    if t is None:
        return NONE
    return TABLE if labels is not None else TENSOR


def _mod_strides(t: Tensor | None, labels: Tensor | None) -> tuple[int, int, int]:
    if t is None:
        return 0, 0, 0
    if labels is not None:  # (K, C) table: row stride in the "n" slot
        return t.stride(0), t.stride(1), 0
    st = strides3(t)
    return st.n, st.c, st.s


def _prepare_modulation(t: Tensor | None, x: Tensor, labels: Tensor | None) -> Tensor | None:
    if t is None or labels is not None:
        return t
    return as_flattenable(t, x)


def _stat_rows(t: Tensor) -> int:
    """Row stride of a (N, C) or (1, C) statistics tensor: 0 when shared across the batch."""
    return 0 if t.shape[0] == 1 else t.stride(0)


def _out_dtype(x: Tensor, gamma: Tensor | None, beta: Tensor | None) -> torch.dtype:
    return _eager.result_dtype(x, gamma, beta)


def _reduction_tiling(x: Tensor, xs: Strides3, **kwargs) -> Tiling:
    n, c = x.shape[:2]
    return tiling(n, c, x[0, 0].numel(), xs, interpreter=_interpreter(), max_span=MAX_SPAN[0], **kwargs)


@torch.library.custom_op("spadenorm::partial_stats", mutates_args=())
def partial_stats_op(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-(n, c, part) fp32 mean and M2 of x over spans of S: (N, C, P) each."""
    x = as_flattenable(x, x)
    xs = strides3(x)
    return partial_stats(x, xs, _reduction_tiling(x, xs))


@partial_stats_op.register_fake
def _partial_stats_fake(x: Tensor) -> tuple[Tensor, Tensor]:
    parts = _reduction_tiling(x, strides3(as_flattenable(x, x))).parts(x[0, 0].numel())
    mean = x.new_empty((x.shape[0], x.shape[1], parts), dtype=torch.float32)
    return mean, torch.empty_like(mean)


def statistics(
    x: Tensor,
    norm: str,
    num_groups: int,
    eps: float,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    momentum: float | Tensor,
    training: bool,
    process_group: object,
) -> tuple[Tensor | None, Tensor | None, bool]:
    """fp32 (scale, shift) per channel, (1, C), and whether they are batch statistics.

    Batch norms (running statistics updated in place), eval mode and ``"none"`` are handled here; for the
    per-sample norms it returns ``(None, None, True)``: :func:`fused_modulate` computes those statistics itself.
    """
    c = x.shape[1]
    if norm == "none":
        ones = torch.ones((1, c), device=x.device, dtype=torch.float32)
        return ones, torch.zeros_like(ones), False
    if norm in _BATCH_NORMS and not training:
        rstd = torch.rsqrt(running_var.float() + eps)
        return rstd[None], (-running_mean.float() * rstd)[None], False
    if norm in _ROW_NORMS:
        return None, None, True
    part_mean, part_m2 = partial_stats_op(x.detach())
    counts = span_counts(x[0, 0].numel(), _reduction_tiling(x, strides3(as_flattenable(x, x))), x.device)
    mean, var = merge_partials(part_mean, part_m2, counts, norm, 1)
    total = x.shape[0] * x[0, 0].numel()
    if norm == "sync_batch" and distributed.is_sync_active(process_group):
        mean, var, total = distributed.sync_mean_var(mean, var, total, process_group)
    if running_mean is not None:
        _eager.update_running_stats(running_mean, running_var, mean, var, total, momentum)
    rstd = torch.rsqrt(var + eps)
    return rstd.float()[None], (-mean * rstd).float()[None], True


def _row_statistics(x: Tensor, xs: Strides3, norm: str, num_groups: int, eps: float) -> tuple[Tensor, Tensor]:
    """Two-phase per-sample statistics: partial kernel, float64 merge; fp32 (N, C) scale and shift."""
    n, c = x.shape[:2]
    tiles = _reduction_tiling(x, xs)
    part_mean, part_m2 = partial_stats(x, xs, tiles)
    groups = _eager.groups_per_sample(norm, num_groups, c)
    mean, var = merge_partials(part_mean, part_m2, span_counts(x[0, 0].numel(), tiles, x.device), norm, groups)
    rstd = torch.rsqrt(var + eps)
    per_group = torch.stack([rstd, -mean * rstd]).float().reshape(2, n, groups, 1)
    per_channel = per_group.expand(2, n, groups, c // groups).reshape(2, n, c)
    return per_channel[0].clone(), per_channel[1].clone()  # separate, dense: kernels read c with stride 1


def row_kernel_tiles(x: Tensor, xs: Strides3, norm: str, num_groups: int) -> tuple[int, int, int, int] | None:
    """(grid_c, channels_per_program, BLOCK_C, BLOCK_S) when the row-persistent kernels apply, else None.

    They apply to instance and group statistics (groups of at most 64 channels) when the launch has enough
    programs to fill the GPU; under the interpreter whenever eligible. ``USE_ROW_KERNELS`` overrides.
    """
    n, c = x.shape[:2]
    s = x[0, 0].numel()
    if norm not in ("instance", "group"):
        return None
    if norm == "group":
        per_group = c // num_groups
        if per_group > 64:
            return None
        block_c = next_pow2(per_group)
        block_s = max(16, min(next_pow2(s), max(16, 2048 // block_c)))
        layout = (num_groups, per_group, block_c, block_s)
    else:
        tiles = tiling(n, c, s, xs, interpreter=True)  # one span: the row kernel loops over S itself
        block_c, block_s = tiles.block_c, tiles.block_s
        if xs.c == 1 and xs.s != 1:  # channels_last: narrower channel tiles (>= 16, whole sectors) for more programs
            while block_c > 16 and n * triton_cdiv(c, block_c) < TARGET_PROGRAMS_GPU // 2:
                block_c //= 2
            block_s = max(16, min(next_pow2(s), 2048 // block_c))
        layout = (triton_cdiv(c, block_c), block_c, block_c, block_s)
    override = USE_ROW_KERNELS[0]
    if override is not None:
        return layout if override else None
    small = x.numel() * x.element_size() <= 16 << 20  # launch-bound and L2-resident: one launch beats two-phase
    if _interpreter() or small or n * layout[0] >= TARGET_PROGRAMS_GPU // 2:
        return layout
    return None


@torch.library.custom_op("spadenorm::fused_modulate", mutates_args=())
def fused_modulate(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    shift: Tensor | None,
    norm: str,
    num_groups: int,
    eps: float,
    batch_stats: bool,
    group_name: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(y, scale, shift)``: ``y = (x * scale + shift) * (1 + gamma) + beta`` in one pass.

    Without ``scale``/``shift`` (per-sample norms) the statistics are computed here, by the row-persistent kernel
    (statistics and output in one launch) or by the partial-statistics kernel; the returned scale and shift are the
    ones used, fp32, (N, C) or (1, C).
    """
    x = as_flattenable(x, x)
    xs = strides3(x)
    n, c = x.shape[:2]
    s = x[0, 0].numel()
    y = torch.empty_like(x, dtype=_out_dtype(x, gamma, beta))
    ys = strides3(y)
    gamma, beta = _prepare_modulation(gamma, x, labels), _prepare_modulation(beta, x, labels)
    mod_args = (
        gamma if gamma is not None else x, beta if beta is not None else x, labels if labels is not None else x,
    )  # fmt: skip
    mod_strides = (*_mod_strides(gamma, labels), *_mod_strides(beta, labels), *_labels_strides(labels))
    kinds = {"GAMMA": _mod_kind(gamma, labels), "BETA": _mod_kind(beta, labels)}
    if scale is None:
        rows = row_kernel_tiles(x, xs, norm, num_groups)
        if rows is not None:
            grid_c, per_program, block_c, block_s = rows
            scale = torch.empty((n, c), device=x.device, dtype=torch.float32)
            shift = torch.empty_like(scale)
            _row_fwd_kernel[(n, grid_c)](
                x, y, scale, shift, *mod_args, c, s, per_program, eps,
                xs.n, xs.c, xs.s, ys.n, ys.c, ys.s, *mod_strides,
                PER_CHANNEL=norm == "instance", **kinds, BLOCK_C=block_c, BLOCK_S=block_s,
            )  # fmt: skip
            return y, scale, shift
        scale, shift = _row_statistics(x, xs, norm, num_groups, eps)
    else:
        scale, shift = scale.clone(), shift.clone()  # outputs must not alias inputs
    tiles = tiling(n, c, s, xs, interpreter=_interpreter())
    _modulate_fwd_kernel[tiles.grid(n, c, s, reduce=False)](
        x, y, scale, shift, *mod_args,
        c, s, xs.n, xs.c, xs.s, ys.n, ys.c, ys.s, _stat_rows(scale), *mod_strides,
        **kinds, BLOCK_C=tiles.block_c, BLOCK_S=tiles.block_s,
    )  # fmt: skip
    return y, scale, shift


@fused_modulate.register_fake
def _fused_modulate_fake(x, gamma, beta, labels, scale, shift, norm, num_groups, eps, batch_stats, group_name):
    y = torch.empty_like(x, dtype=_out_dtype(x, gamma, beta))
    stat = x.new_empty((x.shape[0], x.shape[1]), dtype=torch.float32) if scale is None else torch.empty_like(scale)
    return y, stat, torch.empty_like(stat)


def _pool_to_sets(sums: Tensor, norm: str, num_groups: int) -> Tensor:
    """(k, N, C) per-(n, c) sums -> per-(n, c) sums over each channel's whole reduction set, (k, N|1, C)."""
    k, n, c = sums.shape
    if norm in _BATCH_NORMS:
        return sums.sum(1, keepdim=True)
    groups = _eager.groups_per_sample(norm, num_groups, c)
    per_group = sums.reshape(k, n, groups, c // groups).sum(-1, keepdim=True)
    return per_group.expand(k, n, groups, c // groups).reshape(k, n, c)


@torch.library.custom_op("spadenorm::fused_norm_bwd", mutates_args=())
def fused_norm_bwd(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    labels: Tensor | None,
    scale: Tensor,
    shift: Tensor,
    norm: str,
    num_groups: int,
    num_classes: int,
    batch_stats: bool,
    group_name: str,
    need_dx: bool,
    need_dgamma_map: bool,
    need_tables: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x = as_flattenable(x, x)
    dy = as_flattenable(dy, x)
    gamma = _prepare_modulation(gamma, x, labels)
    xs, ds = strides3(x), strides3(dy)
    n, c = x.shape[:2]
    s = x[0, 0].numel()
    interp = _interpreter()
    rows = row_kernel_tiles(x, xs, norm, num_groups) if batch_stats else None
    if rows is not None:
        return _row_backward(dy, x, ds, xs, gamma, labels, scale, shift, norm, rows, num_classes, need_dx,
                             need_dgamma_map, need_tables)  # fmt: skip
    red = tiling(n, c, s, xs, interpreter=interp, max_span=MAX_SPAN[0])
    parts = red.parts(s)
    sums = torch.empty((4, n, c, parts), device=x.device, dtype=torch.float32)
    gk, gs = _mod_kind(gamma, labels), _mod_strides(gamma, labels)
    dummy = x
    lab = labels if labels is not None else dummy
    ls = _labels_strides(labels)
    bwd_kernels._backward_sums_kernel[red.grid(n, c, s, reduce=True)](
        dy, x, scale, shift, gamma if gamma is not None else dummy, lab, sums,
        n, c, s, parts, red.span, ds.n, ds.c, ds.s, xs.n, xs.c, xs.s, _stat_rows(scale), *gs, *ls,
        GAMMA=gk, BLOCK_C=red.block_c, BLOCK_S=red.block_s,
    )  # fmt: skip
    sums = sums.sum(-1)  # (4, N, C)
    dx = x.new_empty(0)
    dgamma_map = x.new_empty(0)
    if need_dx or need_dgamma_map:
        coef_x = coef_0 = scale
        if batch_stats and need_dx:
            pooled = _pool_to_sets(sums[2:], norm, num_groups)  # sum g, sum g * x_hat over each set
            count = torch.full_like(pooled[:1], float(_eager.set_size(x, norm, num_groups)))
            pooled = torch.cat([pooled, count])
            process_group = _process_group(group_name)
            if norm == "sync_batch" and distributed.is_sync_active(process_group):
                (pooled,) = distributed.all_reduce_sum([pooled], process_group)
            mean_g, mean_gx = pooled[0] / pooled[2], pooled[1] / pooled[2]
            coef_x, coef_0 = (-scale * mean_gx).contiguous(), (-scale * mean_g).contiguous()
        if need_dx:
            dx = torch.empty_like(x)
        if need_dgamma_map:
            dgamma_map = torch.empty_like(x, dtype=gamma.dtype)
        os_ = strides3(dx if need_dx else dgamma_map)  # both are empty_like(x): the same strides
        tiles = tiling(n, c, s, xs, interpreter=interp)
        bwd_kernels._backward_dx_kernel[tiles.grid(n, c, s, reduce=False)](
            dy, x, scale, shift, coef_x, coef_0, gamma if gamma is not None else dummy, lab,
            dx if need_dx else dummy, dgamma_map if need_dgamma_map else dummy,
            c, s, ds.n, ds.c, ds.s, xs.n, xs.c, xs.s, os_.n, os_.c, os_.s, _stat_rows(scale), _stat_rows(coef_x),
            *gs, *ls,
            GAMMA=gk, BATCH_STATS=bool(batch_stats), WRITE_DX=bool(need_dx), WRITE_DGAMMA=bool(need_dgamma_map),
            BLOCK_C=tiles.block_c, BLOCK_S=tiles.block_s,
        )  # fmt: skip
    tables = x.new_empty(0, dtype=torch.float32)
    if need_tables:
        tables = _class_table_grads(dy, x, ds, xs, scale, shift, labels, ls, num_classes, interp)
    return dx, dgamma_map, sums[:2].contiguous(), tables


def _row_backward(
    dy: Tensor,
    x: Tensor,
    ds: Strides3,
    xs: Strides3,
    gamma: Tensor | None,
    labels: Tensor | None,
    scale: Tensor,
    shift: Tensor,
    norm: str,
    rows: tuple[int, int, int, int],
    num_classes: int,
    need_dx: bool,
    need_dgamma_map: bool,
    need_tables: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Backward of the per-sample norms with the row-persistent kernel (sums and dx in one launch)."""
    n, c = x.shape[:2]
    s = x[0, 0].numel()
    grid_c, per_program, block_c, block_s = rows
    dx = torch.empty_like(x) if need_dx else x.new_empty(0)
    dgamma_map = torch.empty_like(x, dtype=gamma.dtype) if need_dgamma_map else x.new_empty(0)
    sums = torch.empty((2, n, c), device=x.device, dtype=torch.float32)
    os_ = strides3(dx if need_dx else dgamma_map) if (need_dx or need_dgamma_map) else xs
    _row_bwd_kernel[(n, grid_c)](
        dy, x, scale, shift, gamma if gamma is not None else x, labels if labels is not None else x,
        dx if need_dx else x, dgamma_map if need_dgamma_map else x, sums,
        n, c, s, per_program, ds.n, ds.c, ds.s, xs.n, xs.c, xs.s, os_.n, os_.c, os_.s,
        *_mod_strides(gamma, labels), *_labels_strides(labels),
        PER_CHANNEL=norm == "instance", GAMMA=_mod_kind(gamma, labels), WRITE_DX=bool(need_dx),
        WRITE_DGAMMA=bool(need_dgamma_map), BLOCK_C=block_c, BLOCK_S=block_s,
    )  # fmt: skip
    tables = x.new_empty(0, dtype=torch.float32)
    if need_tables:
        tables = _class_table_grads(dy, x, ds, xs, scale, shift, labels, _labels_strides(labels), num_classes,
                                    _interpreter())  # fmt: skip
    return dx, dgamma_map, sums, tables


def _class_table_grads(
    dy: Tensor,
    x: Tensor,
    ds: Strides3,
    xs: Strides3,
    scale: Tensor,
    shift: Tensor,
    labels: Tensor,
    ls: tuple[int, int],
    num_classes: int,
    interp: bool,
) -> Tensor:
    """(2, K, C) fp32: per-class sums of dy * x_hat (gamma table) and of dy (beta table)."""
    n, c = x.shape[:2]
    s = x[0, 0].numel()
    block_k = max(16, next_pow2(num_classes))
    tiles = tiling(n, c, s, xs, interpreter=interp, min_block_c=16, max_span=MAX_SPAN[0])
    # Two fp32 [BLOCK_C, BLOCK_K] accumulators live in registers: keep them at 4K values or fewer.
    block_c = max(16, min(tiles.block_c, 2048 // block_k))
    block_s = max(16, min(tiles.block_s, 8192 // block_k))
    span = max(block_s, tiles.span // block_s * block_s)
    parts = triton_cdiv(s, span)
    partial = torch.empty((2, n, parts, c, block_k), device=x.device, dtype=torch.float32)
    grid = (n, triton_cdiv(c, block_c), parts)
    bwd_kernels._class_table_grad_kernel[grid](
        dy, x, scale, shift, labels, partial, n, c, s, parts, span,
        ds.n, ds.c, ds.s, xs.n, xs.c, xs.s, _stat_rows(scale), *ls,
        BLOCK_C=block_c, BLOCK_S=block_s, BLOCK_K=block_k,
    )  # fmt: skip
    return partial.sum((1, 2))[..., :num_classes].transpose(1, 2).contiguous()


@fused_norm_bwd.register_fake
def _fused_norm_bwd_fake(
    dy, x, gamma, labels, scale, shift, norm, num_groups, num_classes, batch_stats, group_name, need_dx,
    need_dgamma_map, need_tables,
):  # fmt: skip
    n, c = x.shape[:2]
    dx = torch.empty_like(x) if need_dx else x.new_empty(0)
    dgamma_map = torch.empty_like(x, dtype=gamma.dtype) if need_dgamma_map else x.new_empty(0)
    sums = x.new_empty((2, n, c), dtype=torch.float32)
    tables = x.new_empty((2, num_classes, c) if need_tables else (0,), dtype=torch.float32)
    return dx, dgamma_map, sums, tables


def _setup_context(ctx, inputs, output) -> None:
    x, gamma, beta, labels, _scale, _shift, norm, num_groups, _eps, batch_stats, group_name = inputs
    _, scale, shift = output
    ctx.save_for_backward(x, gamma, labels, scale, shift)
    ctx.norm, ctx.num_groups, ctx.batch_stats, ctx.group_name = norm, num_groups, batch_stats, group_name
    ctx.beta_meta = None if beta is None else (beta.shape, beta.dtype, labels is None and is_spatial(beta))


def _to_shape(sums_nc: Tensor, shape: torch.Size, dtype: torch.dtype) -> Tensor:
    """(N, C) per-(n, c) sums -> the shape and dtype of a vector modulation tensor (spatial sizes 1)."""
    full = sums_nc.reshape(sums_nc.shape + (1,) * (len(shape) - 2))
    return full.sum_to_size(shape).to(dtype)


def _backward(ctx, dy: Tensor, _dscale: Tensor | None, _dshift: Tensor | None):
    x, gamma, labels, scale, shift = ctx.saved_tensors
    need_x, need_gamma, need_beta = ctx.needs_input_grad[:3]
    table_mode = labels is not None
    gamma_map = gamma is not None and not table_mode and is_spatial(gamma)
    num_classes = gamma.shape[0] if table_mode else 0
    dx, dgamma_map, nc_sums, tables = fused_norm_bwd(
        dy, x, gamma, labels, scale, shift, ctx.norm, ctx.num_groups, num_classes, ctx.batch_stats, ctx.group_name,
        need_x, need_gamma and gamma_map, table_mode and (need_gamma or need_beta),
    )  # fmt: skip
    dgamma = dbeta = None
    if need_gamma:
        if table_mode:
            dgamma = tables[0].to(gamma.dtype)
        elif gamma_map:
            dgamma = dgamma_map.sum_to_size(gamma.shape)
        else:
            dgamma = _to_shape(nc_sums[1], gamma.shape, gamma.dtype)
    if need_beta:
        shape, dtype, spatial = ctx.beta_meta
        if table_mode:
            dbeta = tables[1].to(dtype)
        elif spatial:
            dbeta = dy.sum_to_size(shape).to(dtype)
        else:
            dbeta = _to_shape(nc_sums[0], shape, dtype)
    return (dx if need_x else None, dgamma, dbeta) + (None,) * 8


fused_modulate.register_autograd(_backward, setup_context=_setup_context)
