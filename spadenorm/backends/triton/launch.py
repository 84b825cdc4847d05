"""Launchers: plain Python that allocates the outputs, chooses the tiles and launches one kernel each.

Each launcher takes tensors of x's rank (gamma/beta with sizes 1 or x's) or, with ``labels`` (N, *spatial), (K, C)
class tables, and passes absent tensors to the kernel as ``None``. The launch rule (which path, how many spans) is
here too, with :data:`OVERRIDES` to force a path (tests, and comparing paths on a GPU).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..._backend import triton_interpreter
from ..._core import result_dtype
from .kernels.backward import _backward_dx_kernel, _backward_sums_kernel, _class_table_grad_kernel
from .kernels.common import Kind
from .kernels.modulate import _modulate_fwd_kernel
from .kernels.rows import _row_bwd_kernel, _row_fwd_kernel
from .kernels.statistics import _stats_partial_kernel
from .layout import (
    TARGET_PROGRAMS_GPU,
    RowTiles,
    Strides,
    as_flattenable,
    cdiv,
    choose_tiles,
    elementwise_grid,
    ncs_strides,
    next_pow2,
    reduction_grid,
    row_tiles,
    spatial_size,
)


@dataclass
class LaunchOverrides:
    """Overrides of the launch rule; ``None`` leaves the choice to the rule.

    Attributes:
        row_kernels: force the row-persistent kernels on (where they apply) or off (two-phase path).
        max_span: cap the positions of S per program of the reduction kernels (several partials per row).
    """

    row_kernels: bool | None = None
    max_span: int | None = None


OVERRIDES = LaunchOverrides()


def device_guard(t: Tensor) -> contextlib.AbstractContextManager[Any]:
    """Make ``t``'s GPU the current device while kernels launch (Triton launches on the current device)."""
    if t.device.type == "cuda":
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def use_row_kernels(x: Tensor, groups: int) -> bool:
    """Whether per-sample statistics with ``groups`` sets per sample run on the row-persistent kernels.

    Where they apply (:func:`~.layout.row_tiles`): under the interpreter, for tensors of at most 16 MiB (launch-bound
    and L2-resident: one launch beats two), or when the launch has at least half of ``TARGET_PROGRAMS_GPU`` programs.
    """
    tiles = row_tiles(x, ncs_strides(as_flattenable(x, x)), groups)
    if tiles is None:
        return False
    if OVERRIDES.row_kernels is not None:
        return OVERRIDES.row_kernels
    small = x.numel() * x.element_size() <= 16 << 20
    return triton_interpreter() or small or x.shape[0] * tiles.grid_c >= TARGET_PROGRAMS_GPU // 2


def reduction_span(x: Tensor) -> int:
    """Positions of S per program of the reduction kernels (a multiple of their tile length)."""
    x = as_flattenable(x, x)
    return choose_tiles(x, ncs_strides(x), interpreter=triton_interpreter(), max_span=OVERRIDES.max_span).span


def output_like(x: Tensor, dtype: torch.dtype) -> Tensor:
    """An uninitialised tensor of x's shape and (flattenable) layout: the outputs of every kernel, and their fakes."""
    return torch.empty_like(as_flattenable(x, x), dtype=dtype)


def _modulation(t: Tensor | None, x: Tensor, labels: Tensor | None) -> tuple[Tensor | None, tuple[int, ...], Kind]:
    """(tensor, its three strides, kind) for a gamma/beta kernel argument."""
    if t is None:
        return None, (0, 0, 0), Kind.NONE
    if labels is not None:  # (K, C) table: row stride in the "n" slot
        return t, (t.stride(0), t.stride(1), 0), Kind.TABLE
    t = as_flattenable(t, x)
    return t, tuple(ncs_strides(t)), Kind.TENSOR


def _label_strides(labels: Tensor | None) -> tuple[int, int]:
    if labels is None:
        return 0, 0
    flat = labels.reshape(labels.shape[0], -1)
    return flat.stride(0), flat.stride(1)


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
    _stats_partial_kernel[grid](
        x, mean, m2, x.shape[1], spatial_size(x), grid[2], span, *xs, BLOCK_C=tiles.block_c, BLOCK_S=tiles.block_s
    )
    return mean, m2


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
    x = as_flattenable(x, x)
    xs = ncs_strides(x)
    rows = _row_tiles(x, xs, groups)
    n, c = x.shape[:2]
    y = output_like(x, result_dtype(x, gamma, beta, scale, shift))
    rstd = x.new_empty((n, c), dtype=torch.float32)
    offset = torch.empty_like(rstd)
    gamma, gs, gk = _modulation(gamma, x, labels)
    beta, bs, bk = _modulation(beta, x, labels)
    _row_fwd_kernel[(n, rows.grid_c)](
        x, y, rstd, offset, gamma, beta, labels, scale, shift, c, spatial_size(x), rows.channels_per_program, eps,
        *xs, *ncs_strides(y), *gs, *bs, *_label_strides(labels), *_per_sample_channel(scale),
        *_per_sample_channel(shift), PER_CHANNEL=groups == c, GAMMA=gk, BETA=bk, HAS_SCALE=scale is not None,
        HAS_SHIFT=shift is not None, BLOCK_C=rows.block_c, BLOCK_S=rows.block_s,
    )  # fmt: skip
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
    """fp32 (6, N, C): per-(n, c) sums of dz, dz * x_hat, g, g * x_hat, dy and (``need_z``) dy * z.

    ``dz = dy * (1 + scale)``, ``g = dz * (1 + gamma)``, ``z = x_hat * (1 + gamma) + beta``; beta is read only for
    ``need_z`` (the scale's gradient), and the last sum is 0 without it.
    """
    x = as_flattenable(x, x)
    dy = as_flattenable(dy, x)
    xs = ncs_strides(x)
    tiles = choose_tiles(x, xs, interpreter=triton_interpreter())
    grid = reduction_grid(x, tiles, span)
    sums = x.new_empty((6, x.shape[0], x.shape[1], grid[2]), dtype=torch.float32)
    gamma, gs, gk = _modulation(gamma, x, labels)
    beta, bs, bk = _modulation(beta if need_z else None, x, labels)
    _backward_sums_kernel[grid](
        dy, x, rstd, offset, gamma, beta, labels, scale, sums, x.shape[0], x.shape[1], spatial_size(x), grid[2], span,
        *ncs_strides(dy), *xs, _row_stride(rstd), *gs, *bs, *_label_strides(labels), *_per_sample_channel(scale),
        GAMMA=gk, BETA=bk, HAS_SCALE=scale is not None, NEED_Z=need_z,
        BLOCK_C=tiles.block_c, BLOCK_S=tiles.block_s,
    )  # fmt: skip
    return sums.sum(-1)


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
    write_dx: bool,
    write_dgamma: bool,
    write_dbeta: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dgamma_map, dbeta_map)``: ``dx = g * rstd + x_hat * coef_x + coef_0`` (coefficients absent for running
    statistics), ``dz * x_hat`` for a spatial gamma and ``dz`` for a spatial beta; each empty when not asked for.

    beta is read for its dtype only (the map is dz).
    """
    x = as_flattenable(x, x)
    dy = as_flattenable(dy, x)
    xs = ncs_strides(x)
    tiles = choose_tiles(x, xs, interpreter=triton_interpreter())
    dx, dgamma, dbeta = grad_outputs_like(x, gamma, beta, write_dx, write_dgamma, write_dbeta)
    gamma, gs, gk = _modulation(gamma, x, labels)
    _backward_dx_kernel[elementwise_grid(x, tiles)](
        dy, x, rstd, offset, coef_x, coef_0, gamma, labels, scale, dx if write_dx else None,
        dgamma if dgamma.numel() else None, dbeta if dbeta.numel() else None, x.shape[1], spatial_size(x),
        *ncs_strides(dy), *xs, *_out_strides(xs, dx, dgamma, dbeta), _row_stride(rstd),
        0 if coef_x is None else _row_stride(coef_x), *gs, *_label_strides(labels), *_per_sample_channel(scale),
        GAMMA=gk, FROM_INPUT=coef_x is not None, HAS_SCALE=scale is not None, WRITE_DX=write_dx,
        WRITE_DGAMMA=bool(dgamma.numel()), WRITE_DBETA=bool(dbeta.numel()), BLOCK_C=tiles.block_c,
        BLOCK_S=tiles.block_s,
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
    x = as_flattenable(x, x)
    dy = as_flattenable(dy, x)
    xs = ncs_strides(x)
    rows = _row_tiles(x, xs, groups)
    n, c = x.shape[:2]
    dx, dgamma, dbeta = grad_outputs_like(x, gamma, beta, write_dx, write_dgamma, write_dbeta)
    sums = x.new_empty((4, n, c), dtype=torch.float32)
    gamma, gs, gk = _modulation(gamma, x, labels)
    beta_read, bs, bk = _modulation(beta if need_z else None, x, labels)
    _row_bwd_kernel[(n, rows.grid_c)](
        dy, x, rstd, offset, gamma, beta_read, labels, scale, dx if write_dx else None,
        dgamma if dgamma.numel() else None, dbeta if dbeta.numel() else None, sums, n, c, spatial_size(x),
        rows.channels_per_program, *ncs_strides(dy), *xs, *_out_strides(xs, dx, dgamma, dbeta), *gs, *bs,
        *_label_strides(labels), *_per_sample_channel(scale), PER_CHANNEL=groups == c, GAMMA=gk, BETA=bk,
        HAS_SCALE=scale is not None, NEED_Z=need_z, WRITE_DX=write_dx, WRITE_DGAMMA=bool(dgamma.numel()),
        WRITE_DBETA=bool(dbeta.numel()), BLOCK_C=rows.block_c, BLOCK_S=rows.block_s,
    )  # fmt: skip
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


def _row_tiles(x: Tensor, xs: Strides, groups: int) -> RowTiles:
    tiles = row_tiles(x, xs, groups)
    if tiles is None:
        raise ValueError(f"the row-persistent kernels need groups of at most 64 channels, got {groups} groups of "
                         f"{x.shape[1]} channels")  # fmt: skip
    return tiles
