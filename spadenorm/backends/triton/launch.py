"""Launchers: plain Python that allocates the outputs, chooses the tiles and launches one kernel each.

Each launcher takes tensors of x's rank (gamma/beta with sizes 1 or x's) or, with ``labels`` (N, *spatial), (K, C)
class tables, and passes absent tensors to the kernel as ``None``. The launch rule (which path, which row strategy,
how many spans and programs) is here too, with :data:`OVERRIDES` to force a choice (tests, and comparing paths on a
GPU; the previous paths stay selectable there until a GPU run has compared them).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..._backend import triton_interpreter
from ..._core import result_dtype
from . import occupancy
from .kernels.backward import (
    _backward_dx_kernel,
    _backward_sums_kernel,
    _class_table_grad_chunked_kernel,
    _class_table_grad_kernel,
)
from .kernels.common import Coefficients, Kind
from .kernels.modulate import _modulate_fwd_kernel
from .kernels.rows import _row_bwd_kernel, _row_fwd_kernel
from .kernels.statistics import _finalize_stats_kernel, _stats_partial_kernel
from .layout import (
    PERSISTENT_TILE_BYTES,
    PERSISTENT_TILE_BYTES_BACKWARD,
    RESIDENT_MAX,
    RESIDENT_MAX_TABLES,
    RowLaunch,
    Strides,
    Tiles,
    as_flattenable,
    cdiv,
    choose_tiles,
    elementwise_grid,
    fills_device,
    ncs_strides,
    next_pow2,
    reduction_grid,
    row_launch,
    spatial_size,
)


@dataclass
class LaunchOverrides:
    """Overrides of the launch rule; ``None`` leaves the choice to the rule.

    Attributes:
        row_kernels: force the row kernels on (where they apply) or off (the split-row path: partial statistics,
            a finalize step, the modulate kernel).
        row_strategy: force the row kernels' strategy, one of ``layout.ROW_STRATEGIES`` (``"swept"`` is the
            previous kernel's: two sweeps, one program per row of 2048-element tiles).
        torch_glue: on the split-row path, merge the partial statistics and pool the backward's coefficients in
            torch (the previous path) instead of the finalize kernel and the dx kernel's own pooling.
        table_grad: CLADE's table gradients by ``"chunked"`` (only the classes present in each tile) or
            ``"dense"`` (the previous kernel: a one-hot product over every class).
        max_span: cap the positions of S per program of the reduction kernels (several partials per row).
    """

    row_kernels: bool | None = None
    row_strategy: str | None = None
    torch_glue: bool | None = None
    table_grad: str | None = None
    max_span: int | None = None


OVERRIDES = LaunchOverrides()


@contextlib.contextmanager
def overridden(**fields: Any) -> Iterator[LaunchOverrides]:
    """Set fields of :data:`OVERRIDES` for the duration of a block (forward and backward inside it)."""
    saved = dataclasses.asdict(OVERRIDES)
    for name, value in fields.items():
        if name not in saved:
            raise TypeError(f"LaunchOverrides has no field {name!r}; fields: {sorted(saved)}")
        setattr(OVERRIDES, name, value)
    try:
        yield OVERRIDES
    finally:
        for name, value in saved.items():
            setattr(OVERRIDES, name, value)


def device_guard(t: Tensor) -> contextlib.AbstractContextManager[Any]:
    """Make ``t``'s GPU the current device while kernels launch (Triton launches on the current device)."""
    if t.device.type == "cuda":
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def _device_programs(device: torch.device) -> int:
    """Programs that keep the device busy: two per SM (1 under the interpreter: no narrowing of tiles)."""
    return 2 * occupancy.sm_count(device) if device.type == "cuda" else 1


def row_plan(x: Tensor, groups: int, kernel: str = "_row_fwd_kernel", tables: bool = False) -> RowLaunch | None:
    """The row kernels' launch for ``groups`` per-sample statistics of x (see :func:`.layout.row_launch`), or None.

    ``kernel`` names the forward or backward kernel (their occupancy and persistent tiles differ); ``tables``: the
    modulation gathers class-table rows by a label map.
    """
    x = as_flattenable(x, x)
    strides = ncs_strides(x)
    n, c, s = x.shape[0], x.shape[1], spatial_size(x)
    capacity = occupancy.resident_programs(kernel, (x.dtype, "persistent"), x.device)
    small_tiles = tables or kernel == "_row_bwd_kernel"
    return row_launch(n, c, s, strides, x.element_size(), groups, fill=_device_programs(x.device), capacity=capacity,
                      strategy=OVERRIDES.row_strategy,
                      tile_bytes=PERSISTENT_TILE_BYTES_BACKWARD if small_tiles else PERSISTENT_TILE_BYTES,
                      resident_max=RESIDENT_MAX_TABLES if tables else RESIDENT_MAX)  # fmt: skip


def use_row_kernels(x: Tensor, groups: int, tables: bool = False) -> bool:
    """Whether per-sample statistics with ``groups`` sets per sample run on the row kernels.

    Where they apply: always under the interpreter; on a GPU for resident rows (one launch, 4 passes), and for
    longer rows when there are enough of them to fill the device (persistent: one row per SM; swept: two per SM).
    Fewer, longer rows (batch 1 at 256x256) take the split-row path, which spreads each row over many programs.
    """
    plan = row_plan(x, groups, tables=tables)
    if plan is None:
        return False
    if OVERRIDES.row_kernels is not None:
        return OVERRIDES.row_kernels
    return triton_interpreter() or fills_device(plan, x.shape[0], _device_programs(x.device))


def uses_torch_glue() -> bool:
    """Whether the split-row path merges statistics and pools coefficients in torch (only when overridden)."""
    return bool(OVERRIDES.torch_glue)


def _reduction_tiles(x: Tensor, kernel: str) -> Tiles:
    target = occupancy.resident_programs(kernel, x.dtype, x.device)
    return choose_tiles(x, ncs_strides(x), interpreter=triton_interpreter(), max_span=OVERRIDES.max_span,
                        target_programs=target)  # fmt: skip


def reduction_span(x: Tensor, kernel: str = "_stats_partial_kernel") -> int:
    """Positions of S per program of a reduction kernel (a multiple of its tile length)."""
    return _reduction_tiles(as_flattenable(x, x), kernel).span


def output_like(x: Tensor, dtype: torch.dtype) -> Tensor:
    """An uninitialised tensor of x's shape and (flattenable) layout: the outputs of every kernel, and their fakes."""
    return torch.empty_like(as_flattenable(x, x), dtype=dtype)


def _modulation(t: Tensor | None, x: Tensor, labels: Tensor | None) -> tuple[Tensor | None, tuple[int, ...], Kind]:
    """(tensor, its three strides, kind) for a gamma/beta kernel argument."""
    if t is None:
        return None, (0, 0, 0), Kind.NONE
    if labels is not None:  # (K, C) table: row stride in the "n" slot
        if ncs_strides(as_flattenable(x, x)).s == 1 and t.stride(0) != 1:
            # NCHW tiles run along S, so a warp gathers one channel's entries of many classes: keep each channel's
            # K entries together (a few cache lines) rather than K rows apart.
            t = t.t().contiguous().t()
        return t, (t.stride(0), t.stride(1), 0), Kind.TABLE
    if any(size != 1 for size in t.shape[2:]) and t.shape[2:] != x.shape[2:]:
        # Broadcast over some spatial dimensions only, such as (N, C, H, 1): no single stride walks its positions in
        # x's order, so it is materialized at x's shape (copied in x's memory format below).
        t = t.expand(*t.shape[:2], *x.shape[2:])
    t = as_flattenable(t, x)
    strides = ncs_strides(t)
    return t, tuple(strides), Kind.TENSOR if strides.s else Kind.VECTOR


def _flat_labels(labels: Tensor | None) -> Tensor | None:
    """A label map (N, *spatial) as the (N, S) tensor the kernels read: a view where the spatial dimensions merge
    into one stride, else a copy (a transposed map, one sliced with a step or cut from a wider buffer)."""
    return None if labels is None else labels.flatten(1)


def _label_strides(labels: Tensor | None) -> tuple[int, int]:
    """(n, s) strides of an (N, S) label map from :func:`_flat_labels`; zeros when absent."""
    return (0, 0) if labels is None else (labels.stride(0), labels.stride(1))


def _row_stride(stat: Tensor) -> int:
    """Row stride of a (N, C) or (1, C) per-channel tensor: 0 when shared across the batch."""
    return 0 if stat.shape[0] == 1 else stat.stride(0)


def _per_sample_channel(t: Tensor | None) -> tuple[int, int]:
    """(row stride, column stride) of an (N, C) or (1, C) scale/shift; zeros when absent."""
    return (0, 0) if t is None else (_row_stride(t), t.stride(1))


def partial_stats(x: Tensor, span: int) -> tuple[Tensor, Tensor]:
    """fp32 (N, C, P) mean and M2 of x over the P spans of ``span`` positions of S."""
    x = as_flattenable(x, x)
    xs = ncs_strides(x)
    tiles = choose_tiles(x, xs, interpreter=triton_interpreter())
    grid = reduction_grid(x, tiles, span)
    mean = x.new_empty((x.shape[0], x.shape[1], grid[2]), dtype=torch.float32)
    m2 = torch.empty_like(mean)
    compiled = _stats_partial_kernel[grid](
        x, mean, m2, x.shape[1], spatial_size(x), grid[2], span, *xs, BLOCK_C=tiles.block_c, BLOCK_S=tiles.block_s
    )
    occupancy.record("_stats_partial_kernel", x.dtype, compiled)
    return mean, m2


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
    """fp32 ``(rstd, offset)`` from (N, C, P) partial moments: (1, C) for batch sets, else (N, C) for ``groups``
    sets per sample; fp32 running estimates (C,) are updated in place by ``factor`` (or the 0-d
    ``factor_tensor``)."""
    n, c, parts = mean.shape
    rows = 1 if batch else n
    rstd = mean.new_empty((rows, c))
    offset = torch.empty_like(rstd)
    group_size = 1 if batch else c // groups
    members = n * parts if batch else group_size * parts
    block_c = min(64, next_pow2(c))
    _finalize_stats_kernel[(rows, cdiv(c, block_c))](
        mean, m2, rstd, offset, running_mean, running_var, factor_tensor, float(factor), n, c, spatial, parts, span,
        members, group_size, eps, BATCH=batch, RUNNING=running_mean is not None,
        FACTOR_FROM_PTR=factor_tensor is not None, BLOCK_C=block_c, BLOCK_M=_pooling_block(members, block_c),
    )  # fmt: skip
    return rstd, offset


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
    """``(y, rstd, offset)``: per-sample statistics and the modulated output in one launch; fp32 (N, C) statistics."""
    labels = _flat_labels(labels)
    x = as_flattenable(x, x)
    xs = ncs_strides(x)
    plan = _row_plan(x, groups, "_row_fwd_kernel", labels is not None)
    n, c = x.shape[:2]
    y = output_like(x, result_dtype(x, gamma, beta, scale, shift))
    rstd = x.new_empty((n, c), dtype=torch.float32)
    offset = torch.empty_like(rstd)
    gamma, gs, gk = _modulation(gamma, x, labels)
    beta, bs, bk = _modulation(beta, x, labels)
    compiled = _row_fwd_kernel[(plan.programs,)](
        x, y, rstd, offset, gamma, beta, labels, scale, shift, c, spatial_size(x), plan.grid_c, n * plan.grid_c,
        plan.channels_per_program, eps, *xs, *ncs_strides(y), *gs, *bs, *_label_strides(labels),
        *_per_sample_channel(scale), *_per_sample_channel(shift), PER_CHANNEL=groups == c, GAMMA=gk, BETA=bk,
        HAS_SCALE=scale is not None, HAS_SHIFT=shift is not None, RESIDENT=plan.strategy == "resident",
        EVICT_FIRST=plan.strategy == "persistent", PERSISTENT=plan.programs < n * plan.grid_c, BLOCK_C=plan.block_c,
        BLOCK_S=plan.block_s, STAGES=plan.stages, num_warps=plan.num_warps,
    )  # fmt: skip
    if plan.strategy == "persistent":
        occupancy.record("_row_fwd_kernel", (x.dtype, plan.strategy), compiled)
    return y, rstd, offset


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
    """``y = ((x * rstd + offset) * (1 + gamma) + beta) * (1 + scale) + shift``; fp32 (N, C) or (1, C) statistics."""
    labels = _flat_labels(labels)
    x = as_flattenable(x, x)
    xs = ncs_strides(x)
    tiles = choose_tiles(x, xs, interpreter=triton_interpreter())
    y = output_like(x, result_dtype(x, gamma, beta, scale, shift))
    gamma, gs, gk = _modulation(gamma, x, labels)
    beta, bs, bk = _modulation(beta, x, labels)
    _modulate_fwd_kernel[elementwise_grid(x, tiles)](
        x, y, rstd, offset, gamma, beta, labels, scale, shift, x.shape[1], spatial_size(x),
        *xs, *ncs_strides(y), _row_stride(rstd), *gs, *bs, *_label_strides(labels), *_per_sample_channel(scale),
        *_per_sample_channel(shift), GAMMA=gk, BETA=bk, HAS_SCALE=scale is not None, HAS_SHIFT=shift is not None,
        BLOCK_C=tiles.block_c, BLOCK_S=tiles.block_s,
    )  # fmt: skip
    return y


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
    """fp32 (6, N, C, P): sums of dz, dz * x_hat, g, g * x_hat, dy and (``need_z``) dy * z per (n, c) and span of S
    (P spans of ``span`` positions).

    ``dz = dy * (1 + scale)``, ``g = dz * (1 + gamma)``, ``z = x_hat * (1 + gamma) + beta``; beta is read only for
    ``need_z`` (the scale's gradient), and the last sum is 0 without it.
    """
    labels = _flat_labels(labels)
    x = as_flattenable(x, x)
    dy = as_flattenable(dy, x)
    xs = ncs_strides(x)
    tiles = choose_tiles(x, xs, interpreter=triton_interpreter())
    grid = reduction_grid(x, tiles, span)
    sums = x.new_empty((6, x.shape[0], x.shape[1], grid[2]), dtype=torch.float32)
    gamma, gs, gk = _modulation(gamma, x, labels)
    beta, bs, bk = _modulation(beta if need_z else None, x, labels)
    compiled = _backward_sums_kernel[grid](
        dy, x, rstd, offset, gamma, beta, labels, scale, sums, x.shape[0], x.shape[1], spatial_size(x), grid[2], span,
        *ncs_strides(dy), *xs, _row_stride(rstd), *gs, *bs, *_label_strides(labels), *_per_sample_channel(scale),
        GAMMA=gk, BETA=bk, HAS_SCALE=scale is not None, NEED_Z=need_z,
        BLOCK_C=tiles.block_c, BLOCK_S=tiles.block_s, STAGES=2 if need_z else 3, num_warps=8 if need_z else 4,
    )  # fmt: skip
    occupancy.record("_backward_sums_kernel", x.dtype, compiled)
    return sums


def grad_outputs_like(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    write_dx: bool,
    write_dgamma: bool,
    write_dbeta: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """dx and the spatial dgamma and dbeta maps (x's layout), each empty (numel 0) when not written."""
    dx = output_like(x, x.dtype) if write_dx else x.new_empty(0)
    dgamma = output_like(x, gamma.dtype) if write_dgamma and gamma is not None else x.new_empty(0)
    dbeta = output_like(x, beta.dtype) if write_dbeta and beta is not None else x.new_empty(0)
    return dx, dgamma, dbeta


def _out_strides(xs: Strides, *outputs: Tensor) -> tuple[int, int, int]:
    """Strides shared by the written gradient maps (all allocated like x), or x's when none is written."""
    written = [t for t in outputs if t.numel()]
    n, c, s = ncs_strides(written[0]) if written else xs
    return n, c, s


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
    """``(dx, dgamma_map, dbeta_map)``: ``dx = g * rstd + x_hat * coef_x + coef_0``, ``dz * x_hat`` for a spatial
    gamma and ``dz`` for a spatial beta; each empty when not asked for.

    The coefficients are given (``coef_x``, ``coef_0`` per (n, c)), or pooled by the kernel from the (6, N, C, P)
    ``partials`` of :func:`backward_sums` over each channel's set (``set_size`` positions: the channel over the
    batch, or ``group_size`` channels of a sample), or absent (running statistics). beta is read for its dtype only.
    """
    labels = _flat_labels(labels)
    x = as_flattenable(x, x)
    dy = as_flattenable(dy, x)
    xs = ncs_strides(x)
    tiles = choose_tiles(x, xs, interpreter=triton_interpreter())
    dx, dgamma, dbeta = grad_outputs_like(x, gamma, beta, write_dx, write_dgamma, write_dbeta)
    gamma, gs, gk = _modulation(gamma, x, labels)
    n, c = x.shape[:2]
    if coef_x is not None:
        mode = Coefficients.GIVEN
    elif partials is not None:
        mode = Coefficients.POOLED
    else:
        mode = Coefficients.ABSENT
    parts = partials.shape[-1] if partials is not None else 1
    members = (n if batch else group_size) * parts
    _backward_dx_kernel[elementwise_grid(x, tiles)](
        dy, x, rstd, offset, coef_x, coef_0, partials, gamma, labels, scale, dx if write_dx else None,
        dgamma if dgamma.numel() else None, dbeta if dbeta.numel() else None, n, c, spatial_size(x), parts, members,
        group_size, float(set_size), *ncs_strides(dy), *xs, *_out_strides(xs, dx, dgamma, dbeta), _row_stride(rstd),
        0 if coef_x is None else _row_stride(coef_x), *gs, *_label_strides(labels), *_per_sample_channel(scale),
        GAMMA=gk, COEF=int(mode), BATCH=batch, HAS_SCALE=scale is not None, WRITE_DX=write_dx,
        WRITE_DGAMMA=bool(dgamma.numel()), WRITE_DBETA=bool(dbeta.numel()), BLOCK_C=tiles.block_c,
        BLOCK_S=tiles.block_s, BLOCK_M=_pooling_block(members, tiles.block_c),
    )  # fmt: skip
    return dx, dgamma, dbeta


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
    """``(dx, dgamma_map, dbeta_map, sums)`` of per-sample statistics in one launch.

    sums: fp32 (4, N, C) of dz, dz * x_hat, dy and (``need_z``, reading beta) dy * z per (n, c).
    """
    labels = _flat_labels(labels)
    x = as_flattenable(x, x)
    dy = as_flattenable(dy, x)
    xs = ncs_strides(x)
    plan = _row_plan(x, groups, "_row_bwd_kernel", labels is not None)
    n, c = x.shape[:2]
    dx, dgamma, dbeta = grad_outputs_like(x, gamma, beta, write_dx, write_dgamma, write_dbeta)
    sums = x.new_empty((4, n, c), dtype=torch.float32)
    gamma, gs, gk = _modulation(gamma, x, labels)
    beta_read, bs, bk = _modulation(beta if need_z else None, x, labels)
    compiled = _row_bwd_kernel[(plan.programs,)](
        dy, x, rstd, offset, gamma, beta_read, labels, scale, dx if write_dx else None,
        dgamma if dgamma.numel() else None, dbeta if dbeta.numel() else None, sums, n, c, spatial_size(x),
        plan.grid_c, n * plan.grid_c, plan.channels_per_program, *ncs_strides(dy), *xs,
        *_out_strides(xs, dx, dgamma, dbeta), *gs, *bs, *_label_strides(labels), *_per_sample_channel(scale),
        PER_CHANNEL=groups == c, GAMMA=gk, BETA=bk, HAS_SCALE=scale is not None, NEED_Z=need_z, WRITE_DX=write_dx,
        WRITE_DGAMMA=bool(dgamma.numel()), WRITE_DBETA=bool(dbeta.numel()), RESIDENT=plan.strategy == "resident",
        EVICT_FIRST=plan.strategy == "persistent", PERSISTENT=plan.programs < n * plan.grid_c, BLOCK_C=plan.block_c,
        BLOCK_S=plan.block_s, STAGES=plan.stages, num_warps=plan.num_warps,
    )  # fmt: skip
    if plan.strategy == "persistent":
        occupancy.record("_row_bwd_kernel", (x.dtype, plan.strategy), compiled)
    return dx, dgamma, dbeta, sums


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
    """fp32 (2, K, C): per-class sums of dz * x_hat (the gamma table's gradient) and of dz (the beta table's)."""
    labels = labels.flatten(1)
    if OVERRIDES.table_grad not in (None, "chunked", "dense"):
        raise ValueError(f"table_grad must be 'chunked' or 'dense', got {OVERRIDES.table_grad!r}")
    if OVERRIDES.table_grad == "dense":
        return _dense_class_table_grads(dy, x, labels, scale, rstd, offset, num_classes, span)
    x = as_flattenable(x, x)
    dy = as_flattenable(dy, x)
    xs = ncs_strides(x)
    tiles = choose_tiles(x, xs, interpreter=triton_interpreter(), min_block_c=16)
    # [BLOCK_C, BLOCK_S] values of two tables and their tf32 halves, and a [BLOCK_S, 16] one-hot matrix: 2048-value
    # tiles at 8 warps keep them in registers.
    block_c = max(16, min(tiles.block_c, 64))
    block_s = max(16, min(tiles.block_s, 2048 // block_c))
    n, c = x.shape[:2]
    parts = cdiv(spatial_size(x), span)
    k_pad = cdiv(num_classes, 16) * 16
    partial = x.new_zeros((2, n, parts, c, k_pad), dtype=torch.float32)
    _class_table_grad_chunked_kernel[(n, cdiv(c, block_c), parts)](
        dy, x, rstd, offset, labels, scale, partial, n, c, spatial_size(x), parts, span, k_pad,
        *ncs_strides(dy), *xs, _row_stride(rstd), *_label_strides(labels), *_per_sample_channel(scale),
        HAS_SCALE=scale is not None, BLOCK_C=block_c, BLOCK_S=block_s, num_warps=8,
    )  # fmt: skip
    return partial.sum((1, 2))[..., :num_classes].transpose(1, 2).contiguous()


def _dense_class_table_grads(
    dy: Tensor,
    x: Tensor,
    labels: Tensor,
    scale: Tensor | None,
    rstd: Tensor,
    offset: Tensor,
    num_classes: int,
    span: int,
) -> Tensor:
    """:func:`class_table_grads` by a one-hot product over every class (the previous kernel)."""
    labels = labels.flatten(1)
    x = as_flattenable(x, x)
    dy = as_flattenable(dy, x)
    xs = ncs_strides(x)
    block_k = max(16, next_pow2(num_classes))
    tiles = choose_tiles(x, xs, interpreter=triton_interpreter(), min_block_c=16)
    # Two fp32 [BLOCK_C, BLOCK_K] accumulators live in registers: keep them at 4K values or fewer.
    block_c = max(16, min(tiles.block_c, 2048 // block_k))
    block_s = max(16, min(tiles.block_s, 8192 // block_k))
    n, c = x.shape[:2]
    parts = cdiv(spatial_size(x), span)
    partial = x.new_empty((2, n, parts, c, block_k), dtype=torch.float32)
    _class_table_grad_kernel[(n, cdiv(c, block_c), parts)](
        dy, x, rstd, offset, labels, scale, partial, n, c, spatial_size(x), parts, span,
        *ncs_strides(dy), *xs, _row_stride(rstd), *_label_strides(labels), *_per_sample_channel(scale),
        HAS_SCALE=scale is not None, BLOCK_C=block_c, BLOCK_S=block_s, BLOCK_K=block_k,
    )  # fmt: skip
    return partial.sum((1, 2))[..., :num_classes].transpose(1, 2).contiguous()


def _pooling_block(members: int, block_c: int) -> int:
    """Partials pooled per step by a program of ``block_c`` channels: at most 512 values (4 per thread at 4 warps)."""
    return max(2, min(next_pow2(members), 512 // block_c))


def _row_plan(x: Tensor, groups: int, kernel: str, tables: bool) -> RowLaunch:
    plan = row_plan(x, groups, kernel, tables)
    if plan is None:
        raise ValueError(f"the row kernels need groups of at most 64 channels and rows that fit the forced strategy "
                         f"{OVERRIDES.row_strategy!r}, got {groups} groups of {x.shape[1]} channels over "
                         f"{spatial_size(x)} positions")  # fmt: skip
    return plan
