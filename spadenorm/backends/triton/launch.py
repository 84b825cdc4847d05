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
    x: Tensor, gamma: Tensor | None, beta: Tensor | None, labels: Tensor | None, groups: int, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``(y, scale, shift)``: per-sample statistics and the modulated output in one launch; fp32 (N, C) scale/shift."""
    x = as_flattenable(x, x)
    xs = ncs_strides(x)
    rows = _row_tiles(x, xs, groups)
    n, c = x.shape[:2]
    y = output_like(x, result_dtype(x, gamma, beta))
    scale = x.new_empty((n, c), dtype=torch.float32)
    shift = torch.empty_like(scale)
    gamma, gs, gk = _modulation(gamma, x, labels)
    beta, bs, bk = _modulation(beta, x, labels)
    _row_fwd_kernel[(n, rows.grid_c)](
        x, y, scale, shift, gamma, beta, labels, c, spatial_size(x), rows.channels_per_program, eps,
        *xs, *ncs_strides(y), *gs, *bs, *_label_strides(labels),
        PER_CHANNEL=groups == c, GAMMA=gk, BETA=bk, BLOCK_C=rows.block_c, BLOCK_S=rows.block_s,
    )  # fmt: skip
    return y, scale, shift


def modulate(
    x: Tensor, gamma: Tensor | None, beta: Tensor | None, labels: Tensor | None, scale: Tensor, shift: Tensor
) -> Tensor:
    """``y = (x * scale + shift) * (1 + gamma) + beta`` with fp32 (N, C) or (1, C) scale and shift."""
    x = as_flattenable(x, x)
    xs = ncs_strides(x)
    tiles = choose_tiles(x, xs, interpreter=triton_interpreter())
    y = output_like(x, result_dtype(x, gamma, beta))
    gamma, gs, gk = _modulation(gamma, x, labels)
    beta, bs, bk = _modulation(beta, x, labels)
    _modulate_fwd_kernel[elementwise_grid(x, tiles)](
        x, y, scale, shift, gamma, beta, labels, x.shape[1], spatial_size(x),
        *xs, *ncs_strides(y), _row_stride(scale), *gs, *bs, *_label_strides(labels),
        GAMMA=gk, BETA=bk, BLOCK_C=tiles.block_c, BLOCK_S=tiles.block_s,
    )  # fmt: skip
    return y


def backward_sums(
    dy: Tensor, x: Tensor, gamma: Tensor | None, labels: Tensor | None, scale: Tensor, shift: Tensor, span: int
) -> Tensor:
    """fp32 (4, N, C): per-(n, c) sums of dy, dy * x_hat, g and g * x_hat, g = dy * (1 + gamma)."""
    x = as_flattenable(x, x)
    dy = as_flattenable(dy, x)
    xs = ncs_strides(x)
    tiles = choose_tiles(x, xs, interpreter=triton_interpreter())
    grid = reduction_grid(x, tiles, span)
    sums = x.new_empty((4, x.shape[0], x.shape[1], grid[2]), dtype=torch.float32)
    gamma, gs, gk = _modulation(gamma, x, labels)
    _backward_sums_kernel[grid](
        dy, x, scale, shift, gamma, labels, sums, x.shape[0], x.shape[1], spatial_size(x), grid[2], span,
        *ncs_strides(dy), *xs, _row_stride(scale), *gs, *_label_strides(labels),
        GAMMA=gk, BLOCK_C=tiles.block_c, BLOCK_S=tiles.block_s,
    )  # fmt: skip
    return sums.sum(-1)


def grad_outputs_like(x: Tensor, gamma: Tensor | None, write_dx: bool, write_dgamma: bool) -> tuple[Tensor, Tensor]:
    """dx and the spatial dgamma map (x's layout), each empty (numel 0) when not written."""
    dx = output_like(x, x.dtype) if write_dx else x.new_empty(0)
    dgamma = output_like(x, gamma.dtype) if write_dgamma and gamma is not None else x.new_empty(0)
    return dx, dgamma


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
    """``(dx, dgamma_map)``: ``dx = g * scale + x_hat * coef_x + coef_0`` (coefficients absent for running
    statistics) and ``dy * x_hat`` for a spatial gamma; each empty when not asked for."""
    x = as_flattenable(x, x)
    dy = as_flattenable(dy, x)
    xs = ncs_strides(x)
    tiles = choose_tiles(x, xs, interpreter=triton_interpreter())
    dx, dgamma = grad_outputs_like(x, gamma, write_dx, write_dgamma)
    out_strides = ncs_strides(dx if write_dx else dgamma) if write_dx or write_dgamma else xs
    gamma, gs, gk = _modulation(gamma, x, labels)
    _backward_dx_kernel[elementwise_grid(x, tiles)](
        dy, x, scale, shift, coef_x, coef_0, gamma, labels, dx if write_dx else None,
        dgamma if write_dgamma else None, x.shape[1], spatial_size(x), *ncs_strides(dy), *xs, *out_strides,
        _row_stride(scale), 0 if coef_x is None else _row_stride(coef_x), *gs, *_label_strides(labels),
        GAMMA=gk, FROM_INPUT=coef_x is not None, WRITE_DX=write_dx, WRITE_DGAMMA=write_dgamma,
        BLOCK_C=tiles.block_c, BLOCK_S=tiles.block_s,
    )  # fmt: skip
    return dx, dgamma


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
    """``(dx, dgamma_map, sums)`` of per-sample statistics in one launch; sums: fp32 (2, N, C) of dy, dy * x_hat."""
    x = as_flattenable(x, x)
    dy = as_flattenable(dy, x)
    xs = ncs_strides(x)
    rows = _row_tiles(x, xs, groups)
    n, c = x.shape[:2]
    dx, dgamma = grad_outputs_like(x, gamma, write_dx, write_dgamma)
    sums = x.new_empty((2, n, c), dtype=torch.float32)
    out_strides = ncs_strides(dx if write_dx else dgamma) if write_dx or write_dgamma else xs
    gamma, gs, gk = _modulation(gamma, x, labels)
    _row_bwd_kernel[(n, rows.grid_c)](
        dy, x, scale, shift, gamma, labels, dx if write_dx else None, dgamma if write_dgamma else None, sums,
        n, c, spatial_size(x), rows.channels_per_program, *ncs_strides(dy), *xs, *out_strides, *gs,
        *_label_strides(labels), PER_CHANNEL=groups == c, GAMMA=gk, WRITE_DX=write_dx, WRITE_DGAMMA=write_dgamma,
        BLOCK_C=rows.block_c, BLOCK_S=rows.block_s,
    )  # fmt: skip
    return dx, dgamma, sums


def class_table_grads(
    dy: Tensor, x: Tensor, labels: Tensor, scale: Tensor, shift: Tensor, num_classes: int, span: int
) -> Tensor:
    """fp32 (2, K, C): per-class sums of dy * x_hat (the gamma table's gradient) and of dy (the beta table's)."""
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
        dy, x, scale, shift, labels, partial, n, c, spatial_size(x), parts, span,
        *ncs_strides(dy), *xs, _row_stride(scale), *_label_strides(labels),
        BLOCK_C=block_c, BLOCK_S=block_s, BLOCK_K=block_k,
    )  # fmt: skip
    return partial.sum((1, 2))[..., :num_classes].transpose(1, 2).contiguous()


def _row_tiles(x: Tensor, xs: Strides, groups: int) -> RowTiles:
    tiles = row_tiles(x, xs, groups)
    if tiles is None:
        raise ValueError(f"the row-persistent kernels need groups of at most 64 channels, got {groups} groups of "
                         f"{x.shape[1]} channels")  # fmt: skip
    return tiles
