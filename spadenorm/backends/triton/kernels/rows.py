"""Row kernels for per-sample statistics (instance, group): one program owns whole reduction sets ("rows").

A row is ``row_channels`` channels of one sample in a [BLOCK_C, BLOCK_S] tile: BLOCK_C separate sets for instance
statistics (``PER_CHANNEL``), or one group (BLOCK_C >= channels per group, masked) for group statistics. A launch
covers ``rows = N * ceil(C / row_channels)`` rows; ``STRATEGY`` (:class:`.common.Strategy`) says how:

* ``RESIDENT``: one program per row, the row one tile. It is loaded once, its statistics come from the registers
  (centred, exact two-pass) and the output is written from the same registers: x, gamma, beta are read once and y
  written once (4 passes; the backward reads dy, x, gamma and writes dx, dgamma: 5).
* ``SWEPT``: one program per row, longer than a tile. The program sweeps S twice: first accumulating Chan-merged
  (count, mean, M2) per channel, then, in reverse so that the tiles read last are still in cache, writing the
  output. The second read of x (and, backward, of dy and gamma) comes from L2 where the rows in flight fit in it.
* ``PERSISTENT``: as ``SWEPT``, on a grid of as many programs as the GPU holds at once, each looping over rows
  p, p + programs, ...; the outputs are stored evict-first so that they do not push the row out of L2.

The second modulation (per-(n, c) scale and shift) costs no pass of its own; its backward reads beta too when the
scale needs a gradient (``NEED_Z``).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import (
    PERSISTENT,
    RESIDENT,
    _grad_sums,
    _merge_tile,
    _moments,
    _offsets,
    _per_channel_inputs,
    _store_input_grads,
    _store_output,
    _tile_grad_sums,
)


@triton.jit
def _row_channels(row, C, row_channels, BLOCK_C: tl.constexpr):
    """Sample n, channels c, their mask and int64 column offsets c2 [BLOCK_C, 1] of row ``row``."""
    per_sample = tl.cdiv(C, row_channels)
    n = (row // per_sample).to(tl.int64)
    c = (row % per_sample) * row_channels + tl.arange(0, BLOCK_C)
    c_mask = (c < C) & (tl.arange(0, BLOCK_C) < row_channels)
    return n, c, c_mask, c.to(tl.int64)[:, None]


@triton.jit
def _set_moments(count, mean, m2, c_mask, PER_CHANNEL: tl.constexpr):
    """Per-channel (count, mean, M2) -> the mean and biased variance of each channel's set: itself, or its group."""
    if PER_CHANNEL:
        return mean, m2 / count
    total = tl.sum(tl.where(c_mask, count, 0.0), axis=0)
    group_mean = tl.sum(tl.where(c_mask, count * mean, 0.0), axis=0) / total
    dev = tl.where(c_mask, mean - group_mean, 0.0)
    group_m2 = tl.sum(tl.where(c_mask, m2 + count * dev * dev, 0.0), axis=0)
    return group_mean + tl.zeros_like(mean), group_m2 / total + tl.zeros_like(mean)


@triton.jit
def _store_statistics(count, mean, m2, stats_ptr, n, c, c_mask, N, C, eps, PER_CHANNEL: tl.constexpr):
    """rstd and offset = -mean * rstd [BLOCK_C] of each channel's set from per-channel moments, stored in the fp32
    (2, N, C) statistics."""
    set_mean, set_var = _set_moments(count, mean, m2, c_mask, PER_CHANNEL)
    rstd = tl.div_rn(1.0, tl.sqrt_rn(set_var + eps))  # correctly rounded, as the float64 merge
    offset = -set_mean * rstd
    tl.store(stats_ptr + n * C + c, rstd, mask=c_mask)
    tl.store(stats_ptr + tl.cast(N, tl.int64) * C + n * C + c, offset, mask=c_mask)
    return rstd, offset


@triton.jit
def _row_fwd_kernel(
    x_ptr,  # activations (strides xs)
    y_ptr,  # out: the output (strides ys)
    stats_ptr,  # out: fp32 (2, N, C) rstd and offset, contiguous
    g_ptr,  # gamma (common._modulation), or None
    b_ptr,  # beta, or None
    lab_ptr,  # class ids (n, s) of the tables, or None
    scale_ptr,  # second modulation's scale per (n, c), or None
    shift_ptr,  # second modulation's shift per (n, c), or None
    eps,
    shape,  # (N, C, S)
    row_channels,  # channels per row: a group, or BLOCK_C for instance statistics
    xs,
    ys,
    gs,
    bs,
    ls,
    ss,
    ts,
    GAMMA: tl.constexpr,
    BETA: tl.constexpr,
    PER_CHANNEL: tl.constexpr,  # instance statistics (each channel its own set), else one group per row
    STRATEGY: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    if STRATEGY == PERSISTENT:
        rows = shape[0] * tl.cdiv(shape[1], row_channels)
        for row in tl.range(tl.program_id(0), rows, tl.num_programs(0), num_stages=1):
            _forward_row(row, x_ptr, y_ptr, stats_ptr, g_ptr, b_ptr, lab_ptr, scale_ptr, shift_ptr, eps,
                         shape, row_channels, xs, ys, gs, bs, ls, ss, ts, GAMMA, BETA, PER_CHANNEL, STRATEGY, BLOCK_C,
                         BLOCK_S)  # fmt: skip
    else:
        _forward_row(tl.program_id(0), x_ptr, y_ptr, stats_ptr, g_ptr, b_ptr, lab_ptr, scale_ptr, shift_ptr, eps,
                     shape, row_channels, xs, ys, gs, bs, ls, ss, ts, GAMMA, BETA, PER_CHANNEL, STRATEGY, BLOCK_C,
                     BLOCK_S)  # fmt: skip


@triton.jit
def _forward_row(row, x_ptr, y_ptr, stats_ptr, g_ptr, b_ptr, lab_ptr, scale_ptr, shift_ptr, eps, shape, row_channels,
                 xs, ys, gs, bs, ls, ss, ts, GAMMA: tl.constexpr, BETA: tl.constexpr, PER_CHANNEL: tl.constexpr,
                 STRATEGY: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):  # fmt: skip
    """One row of the forward: its statistics (stored) and its output."""
    N, C, S = shape[0], shape[1], shape[2]
    n, c, c_mask, c2 = _row_channels(row, C, row_channels, BLOCK_C)
    g_ptr, b_ptr, scale, shift = _per_channel_inputs(g_ptr, gs, b_ptr, bs, scale_ptr, ss, shift_ptr, ts, n, c, c_mask,
                                                     GAMMA, BETA)  # fmt: skip
    scale = scale if scale_ptr is not None else None
    shift = shift if shift_ptr is not None else None
    if STRATEGY == RESIDENT:
        s = tl.arange(0, BLOCK_S)
        s_mask = s < S
        s2 = s.to(tl.int64)[None, :]
        mask = c_mask[:, None] & s_mask[None, :]
        x = tl.load(x_ptr + _offsets(xs, n, c2, s2), mask=mask, other=0.0).to(tl.float32)
        none = tl.zeros([BLOCK_C], dtype=tl.float32)
        count, mean, m2 = _merge_tile(none, none, none, x, mask, s_mask)
        rstd, offset = _store_statistics(count, mean, m2, stats_ptr, n, c, c_mask, N, C, eps, PER_CHANNEL)
        _store_output(x, y_ptr, ys, g_ptr, gs, b_ptr, bs, lab_ptr, ls, n, c2, s, s2, s_mask, mask, rstd[:, None],
                      offset[:, None], scale, shift, GAMMA, BETA, BLOCK_S, False)  # fmt: skip
    else:
        count, mean, m2 = _moments(x_ptr, xs, n, c2, c_mask, 0, S, BLOCK_C, BLOCK_S, 2)
        rstd, offset = _store_statistics(count, mean, m2, stats_ptr, n, c, c_mask, N, C, eps, PER_CHANNEL)
        num_chunks = tl.cdiv(S, BLOCK_S)
        for i in tl.range(0, num_chunks, num_stages=2):
            s = (num_chunks - 1 - i) * BLOCK_S + tl.arange(0, BLOCK_S)  # reverse: the last tiles read are cached
            s_mask = s < S
            s2 = s.to(tl.int64)[None, :]
            mask = c_mask[:, None] & s_mask[None, :]
            x = tl.load(x_ptr + _offsets(xs, n, c2, s2), mask=mask, other=0.0).to(tl.float32)
            _store_output(x, y_ptr, ys, g_ptr, gs, b_ptr, bs, lab_ptr, ls, n, c2, s, s2, s_mask, mask,
                          rstd[:, None], offset[:, None], scale, shift, GAMMA, BETA, BLOCK_S,
                          STRATEGY == PERSISTENT)  # fmt: skip


@triton.jit
def _store_row_sums(sums_ptr, sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz, rstd, n, c, c_mask, N, C, S,
                    PER_CHANNEL: tl.constexpr):  # fmt: skip
    """Store the per-(n, c) sums (4, N, C) and return the dx coefficients [BLOCK_C, 1] of each channel's set."""
    plane = tl.cast(N, tl.int64) * C
    tl.store(sums_ptr + n * C + c, sum_dz, mask=c_mask)
    tl.store(sums_ptr + plane + n * C + c, sum_dzx, mask=c_mask)
    tl.store(sums_ptr + 2 * plane + n * C + c, sum_dy, mask=c_mask)
    tl.store(sums_ptr + 3 * plane + n * C + c, sum_dyz, mask=c_mask)
    if PER_CHANNEL:
        set_size = S * 1.0
        mean_g = sum_g / set_size
        mean_gx = sum_gx / set_size
    else:
        set_size = S * tl.sum(c_mask.to(tl.float32), axis=0)
        mean_g = tl.sum(sum_g, axis=0) / set_size + tl.zeros_like(sum_g)
        mean_gx = tl.sum(sum_gx, axis=0) / set_size + tl.zeros_like(sum_gx)
    return (-rstd * mean_gx)[:, None], (-rstd * mean_g)[:, None]


@triton.jit
def _row_bwd_kernel(
    dy_ptr,  # incoming gradient (strides dys)
    x_ptr,  # saved activations (strides xs)
    stats_ptr,  # fp32 (2, N, C) rstd and offset, contiguous
    g_ptr,  # gamma (tensor or table), or None
    b_ptr,  # beta (tensor or table), read for NEED_Z only, or None
    lab_ptr,  # class ids of the tables, or None
    scale_ptr,  # second modulation's scale per (n, c), or None
    dx_ptr,  # out: dx (strides os), or None
    dg_ptr,  # out: dz * x_hat for a spatial gamma (strides os), or None
    db_ptr,  # out: dz for a spatial beta under a scale (strides os), or None
    sums_ptr,  # out: fp32 (4, N, C): sum dz, sum dz * x_hat, sum dy, sum dy * z per (n, c)
    shape,  # (N, C, S)
    row_channels,
    strides,  # (dys, xs, os): the strides of dy, x and the gradient maps
    gs,
    bs,
    ls,
    ss,
    GAMMA: tl.constexpr,
    BETA: tl.constexpr,
    PER_CHANNEL: tl.constexpr,
    NEED_Z: tl.constexpr,  # the scale needs a gradient: sum dy * z, which reads beta
    STRATEGY: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    if STRATEGY == PERSISTENT:
        rows = shape[0] * tl.cdiv(shape[1], row_channels)
        for row in tl.range(tl.program_id(0), rows, tl.num_programs(0), num_stages=1):
            _backward_row(row, dy_ptr, x_ptr, stats_ptr, g_ptr, b_ptr, lab_ptr, scale_ptr, dx_ptr, dg_ptr, db_ptr,
                          sums_ptr, shape, row_channels, strides, gs, bs, ls, ss, GAMMA, BETA, PER_CHANNEL, NEED_Z,
                          STRATEGY, BLOCK_C, BLOCK_S)  # fmt: skip
    else:
        _backward_row(tl.program_id(0), dy_ptr, x_ptr, stats_ptr, g_ptr, b_ptr, lab_ptr, scale_ptr, dx_ptr, dg_ptr,
                      db_ptr, sums_ptr, shape, row_channels, strides, gs, bs, ls, ss, GAMMA, BETA, PER_CHANNEL, NEED_Z,
                      STRATEGY, BLOCK_C, BLOCK_S)  # fmt: skip


@triton.jit
def _backward_row(row, dy_ptr, x_ptr, stats_ptr, g_ptr, b_ptr, lab_ptr, scale_ptr, dx_ptr, dg_ptr, db_ptr, sums_ptr,
                  shape, row_channels, strides, gs, bs, ls, ss, GAMMA: tl.constexpr, BETA: tl.constexpr,
                  PER_CHANNEL: tl.constexpr, NEED_Z: tl.constexpr, STRATEGY: tl.constexpr, BLOCK_C: tl.constexpr,
                  BLOCK_S: tl.constexpr):  # fmt: skip
    """One row of the backward: its sums (stored) and its gradient maps."""
    N, C, S = shape[0], shape[1], shape[2]
    dys, xs, os = strides[0], strides[1], strides[2]
    n, c, c_mask, c2 = _row_channels(row, C, row_channels, BLOCK_C)
    rstd_c = tl.load(stats_ptr + n * C + c, mask=c_mask, other=0.0)
    rstd = rstd_c[:, None]
    offset = tl.load(stats_ptr + tl.cast(N, tl.int64) * C + n * C + c, mask=c_mask, other=0.0)[:, None]
    g_ptr, b_ptr, scale, _ = _per_channel_inputs(g_ptr, gs, b_ptr, bs, scale_ptr, ss, None, None, n, c, c_mask, GAMMA,
                                                 BETA)  # fmt: skip
    scale = scale if scale_ptr is not None else None
    if STRATEGY == RESIDENT:
        s = tl.arange(0, BLOCK_S)
        s_mask = s < S
        s2 = s.to(tl.int64)[None, :]
        mask = c_mask[:, None] & s_mask[None, :]
        dy = tl.load(dy_ptr + _offsets(dys, n, c2, s2), mask=mask, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + _offsets(xs, n, c2, s2), mask=mask, other=0.0).to(tl.float32)
        sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz = _tile_grad_sums(
            dy, x, g_ptr, gs, b_ptr, bs, lab_ptr, ls, n, c2, s, s2, s_mask, mask, rstd, offset, scale, GAMMA, BETA,
            NEED_Z, BLOCK_S,
        )  # fmt: skip
        coef_x, coef_0 = _store_row_sums(sums_ptr, sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz, rstd_c, n, c,
                                         c_mask, N, C, S, PER_CHANNEL)  # fmt: skip
        _store_input_grads(dy, x, g_ptr, gs, lab_ptr, ls, dx_ptr, dg_ptr, db_ptr, os, n, c2, s, s2, s_mask, mask, rstd,
                           offset, coef_x, coef_0, scale, GAMMA, BLOCK_S, False)  # fmt: skip
    else:
        sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz = _grad_sums(
            dy_ptr, dys, x_ptr, xs, g_ptr, gs, b_ptr, bs, lab_ptr, ls, n, c2, c_mask, rstd, offset, scale, 0, S, GAMMA,
            BETA, NEED_Z, BLOCK_C, BLOCK_S, 2,
        )  # fmt: skip
        coef_x, coef_0 = _store_row_sums(sums_ptr, sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz, rstd_c, n, c,
                                         c_mask, N, C, S, PER_CHANNEL)  # fmt: skip
        num_chunks = tl.cdiv(S, BLOCK_S)
        for i in tl.range(0, num_chunks, num_stages=2):
            s = (num_chunks - 1 - i) * BLOCK_S + tl.arange(0, BLOCK_S)  # reverse: the last tiles read are cached
            s_mask = s < S
            s2 = s.to(tl.int64)[None, :]
            mask = c_mask[:, None] & s_mask[None, :]
            dy = tl.load(dy_ptr + _offsets(dys, n, c2, s2), mask=mask, other=0.0).to(tl.float32)
            x = tl.load(x_ptr + _offsets(xs, n, c2, s2), mask=mask, other=0.0).to(tl.float32)
            _store_input_grads(dy, x, g_ptr, gs, lab_ptr, ls, dx_ptr, dg_ptr, db_ptr, os, n, c2, s, s2, s_mask, mask,
                               rstd, offset, coef_x, coef_0, scale, GAMMA, BLOCK_S,
                               STRATEGY == PERSISTENT)  # fmt: skip
