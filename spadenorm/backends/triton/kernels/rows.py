"""Row kernels for per-sample statistics (instance, group): one program owns whole reduction sets ("rows").

A row is BLOCK_C channels of one sample: BLOCK_C separate sets for instance norm, or one group (BLOCK_C >= channels
per group, masked) for group norm. The launch has ``rows = N * grid_c`` rows and any number of programs; program p
takes rows p, p + programs, ... (a persistent grid when there are fewer programs than rows). Each row is done in
one of two ways, chosen at compile time:

* ``RESIDENT``: the row is one [BLOCK_C, BLOCK_S] tile. It is loaded once, its statistics come from the registers
  (centred, exact two-pass) and the output is written from the same registers: x, gamma, beta are read once and y
  written once (4 passes; the backward reads dy, x, gamma and writes dx, dgamma: 5).
* swept: the row is longer than a tile. The program sweeps S twice: first accumulating Chan-merged (count, mean,
  M2) per channel, then, in reverse so that the tiles read last are still in cache, writing the output. The second
  read of x (and, backward, of dy and gamma) comes from L2 where the rows in flight fit in it, else from memory.
  With ``EVICT_FIRST`` the outputs are stored with an evict-first hint so that they do not push the row out.

The second modulation (per-(n, c) scale and shift) costs no pass of its own; its backward reads beta too when the
scale needs a gradient.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import (
    VECTOR,
    _grad_sums,
    _input_grad_tile,
    _merge_tile,
    _moments,
    _output_tile,
    _per_channel,
    _row_channels,
    _store_input_grads,
    _store_output,
    _tile_grad_sums,
    _vector_values,
)


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
def _store_statistics(count, mean, m2, rstd_out_ptr, offset_out_ptr, n, c, c_mask, C, eps,
                      PER_CHANNEL: tl.constexpr):  # fmt: skip
    """rstd and offset = -mean * rstd of each channel's set from per-channel moments; stored fp32 (N, C)."""
    set_mean, set_var = _set_moments(count, mean, m2, c_mask, PER_CHANNEL)
    rstd = tl.div_rn(1.0, tl.sqrt_rn(set_var + eps))  # correctly rounded, as the float64 merge
    offset = -set_mean * rstd
    tl.store(rstd_out_ptr + n * C + c, rstd, mask=c_mask)
    tl.store(offset_out_ptr + n * C + c, offset, mask=c_mask)
    return rstd, offset


@triton.jit
def _row_fwd_kernel(
    x_ptr,  # activations, (n, c, s) at n * sxn + c * sxc + s * sxs
    y_ptr,  # out: same shape, strides sy*
    rstd_out_ptr,  # out: fp32 (N, C) rstd, contiguous
    offset_out_ptr,  # out: fp32 (N, C) -mean * rstd
    g_ptr,  # gamma, or None (see common._modulation)
    b_ptr,  # beta, or None
    lab_ptr,  # class ids (n, s) for tables, or None
    scale_ptr,  # second-modulation scale per (n, c), or None
    shift_ptr,  # second-modulation shift per (n, c), or None
    C,
    S,
    grid_c,  # rows per sample: channel blocks or groups
    rows,  # N * grid_c
    channels_per_program,  # channels per group, or BLOCK_C for instance norm
    eps,
    sxn,
    sxc,
    sxs,
    syn,
    syc,
    sys_,
    sgn,
    sgc,
    sgs,
    sbn,
    sbc,
    sbs,
    sln,
    sls,
    ssn,
    ssc,
    stn,
    stc,
    PER_CHANNEL: tl.constexpr,
    GAMMA: tl.constexpr,
    BETA: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    HAS_SHIFT: tl.constexpr,
    RESIDENT: tl.constexpr,  # each row is one tile, kept in registers (S <= BLOCK_S)
    EVICT_FIRST: tl.constexpr,  # store y with an evict-first hint
    PERSISTENT: tl.constexpr,  # fewer programs than rows: each loops over rows (else program i does row i)
    STAGES: tl.constexpr,  # pipeline depth of the two sweeps
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    if PERSISTENT:
        for row in tl.range(tl.program_id(0), rows, tl.num_programs(0), num_stages=1):
            _forward_row(
                row, x_ptr, y_ptr, rstd_out_ptr, offset_out_ptr, g_ptr, b_ptr, lab_ptr, scale_ptr, shift_ptr, C, S,
                grid_c, channels_per_program, eps, sxn, sxc, sxs, syn, syc, sys_, sgn, sgc, sgs, sbn, sbc, sbs, sln,
                sls, ssn, ssc, stn, stc, PER_CHANNEL, GAMMA, BETA, HAS_SCALE, HAS_SHIFT, RESIDENT, EVICT_FIRST,
                BLOCK_C, BLOCK_S, STAGES,
            )  # fmt: skip
    else:
        _forward_row(
            tl.program_id(0), x_ptr, y_ptr, rstd_out_ptr, offset_out_ptr, g_ptr, b_ptr, lab_ptr, scale_ptr,
            shift_ptr, C, S, grid_c, channels_per_program, eps, sxn, sxc, sxs, syn, syc, sys_, sgn, sgc, sgs, sbn,
            sbc, sbs, sln, sls, ssn, ssc, stn, stc, PER_CHANNEL, GAMMA, BETA, HAS_SCALE, HAS_SHIFT, RESIDENT,
            EVICT_FIRST, BLOCK_C, BLOCK_S, STAGES,
        )  # fmt: skip


@triton.jit
def _forward_row(row, x_ptr, y_ptr, rstd_out_ptr, offset_out_ptr, g_ptr, b_ptr, lab_ptr, scale_ptr, shift_ptr, C, S,
                 grid_c, channels_per_program, eps, sxn, sxc, sxs, syn, syc, sys_, sgn, sgc, sgs, sbn, sbc, sbs, sln,
                 sls, ssn, ssc, stn, stc, PER_CHANNEL: tl.constexpr, GAMMA: tl.constexpr, BETA: tl.constexpr,
                 HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, RESIDENT: tl.constexpr, EVICT_FIRST: tl.constexpr,
                 BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, STAGES: tl.constexpr):  # fmt: skip
    """One row of the forward: its statistics (stored) and its output."""
    n, c, c_mask, c2 = _row_channels(row, grid_c, C, channels_per_program, BLOCK_C)
    if GAMMA == VECTOR:
        g_ptr = _vector_values(g_ptr, n, c, c_mask, sgn, sgc)
    if BETA == VECTOR:
        b_ptr = _vector_values(b_ptr, n, c, c_mask, sbn, sbc)
    scale = _per_channel(scale_ptr, n, c, c_mask, ssn, ssc, BLOCK_C, HAS_SCALE)
    shift = _per_channel(shift_ptr, n, c, c_mask, stn, stc, BLOCK_C, HAS_SHIFT)
    if RESIDENT:
        s = tl.arange(0, BLOCK_S)
        s_mask = s < S
        s2 = s.to(tl.int64)[None, :]
        mask = c_mask[:, None] & s_mask[None, :]
        x = tl.load(x_ptr + n * sxn + c2 * sxc + s2 * sxs, mask=mask, other=0.0).to(tl.float32)
        none = tl.zeros([BLOCK_C], dtype=tl.float32)
        count, mean, m2 = _merge_tile(none, none, none, x, mask, s_mask)
        rstd, offset = _store_statistics(count, mean, m2, rstd_out_ptr, offset_out_ptr, n, c, c_mask, C, eps,
                                         PER_CHANNEL)  # fmt: skip
        _store_output(
            x, y_ptr, g_ptr, b_ptr, lab_ptr, n, c2, s, s2, s_mask, mask, rstd[:, None], offset[:, None], scale,
            shift, syn, syc, sys_, sgn, sgc, sgs, sbn, sbc, sbs, sln, sls, GAMMA, BETA, HAS_SCALE, HAS_SHIFT,
            BLOCK_S, EVICT_FIRST,
        )  # fmt: skip
    else:
        count, mean, m2 = _moments(x_ptr, n, c2, c_mask, 0, S, sxn, sxc, sxs, BLOCK_C, BLOCK_S, STAGES)
        rstd, offset = _store_statistics(count, mean, m2, rstd_out_ptr, offset_out_ptr, n, c, c_mask, C, eps,
                                         PER_CHANNEL)  # fmt: skip
        num_chunks = tl.cdiv(S, BLOCK_S)
        for i in tl.range(0, num_chunks, num_stages=STAGES):
            s = (num_chunks - 1 - i) * BLOCK_S + tl.arange(0, BLOCK_S)  # reverse: the last tiles read are cached
            s_mask = s < S
            mask = c_mask[:, None] & s_mask[None, :]
            _output_tile(
                x_ptr, y_ptr, g_ptr, b_ptr, lab_ptr, n, c2, s, s.to(tl.int64)[None, :], s_mask, mask,
                rstd[:, None], offset[:, None], scale, shift, sxn, sxc, sxs, syn, syc, sys_, sgn, sgc, sgs, sbn,
                sbc, sbs, sln, sls, GAMMA, BETA, HAS_SCALE, HAS_SHIFT, BLOCK_S, EVICT_FIRST,
            )  # fmt: skip


@triton.jit
def _store_row_sums(sums_ptr, sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz, rstd_c, n, c, c_mask, N, C, S,
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
    return (-rstd_c * mean_gx)[:, None], (-rstd_c * mean_g)[:, None]


@triton.jit
def _row_bwd_kernel(
    dy_ptr,  # incoming gradient (strides sd*)
    x_ptr,  # saved activations (strides sx*)
    rstd_ptr,  # fp32 (N, C) rstd
    offset_ptr,  # fp32 (N, C) -mean * rstd
    g_ptr,  # gamma (tensor or table), or None
    b_ptr,  # beta (tensor or table), read for NEED_Z only, or None
    lab_ptr,  # class ids for tables, or None
    scale_ptr,  # second-modulation scale per (n, c), or None
    dx_ptr,  # out: dx, strides so* (WRITE_DX), or None
    dg_ptr,  # out: dz * x_hat for a spatial gamma, strides so* (WRITE_DGAMMA), or None
    db_ptr,  # out: dz for a spatial beta under a scale, strides so* (WRITE_DBETA), or None
    sums_ptr,  # out: fp32 (4, N, C): sum dz, sum dz * x_hat, sum dy, sum dy * z per (n, c)
    N,
    C,
    S,
    grid_c,
    rows,
    channels_per_program,
    sdn,
    sdc,
    sds,
    sxn,
    sxc,
    sxs,
    son,
    soc,
    sos,
    sgn,
    sgc,
    sgs,
    sbn,
    sbc,
    sbs,
    sln,
    sls,
    ssn,
    ssc,
    PER_CHANNEL: tl.constexpr,
    GAMMA: tl.constexpr,
    BETA: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    NEED_Z: tl.constexpr,
    WRITE_DX: tl.constexpr,
    WRITE_DGAMMA: tl.constexpr,
    WRITE_DBETA: tl.constexpr,
    RESIDENT: tl.constexpr,
    EVICT_FIRST: tl.constexpr,
    PERSISTENT: tl.constexpr,  # fewer programs than rows: each loops over rows (else program i does row i)
    STAGES: tl.constexpr,  # pipeline depth of the two sweeps
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    if PERSISTENT:
        for row in tl.range(tl.program_id(0), rows, tl.num_programs(0), num_stages=1):
            _backward_row(
                row, dy_ptr, x_ptr, rstd_ptr, offset_ptr, g_ptr, b_ptr, lab_ptr, scale_ptr, dx_ptr, dg_ptr, db_ptr,
                sums_ptr, N, C, S, grid_c, channels_per_program, sdn, sdc, sds, sxn, sxc, sxs, son, soc, sos, sgn,
                sgc, sgs, sbn, sbc, sbs, sln, sls, ssn, ssc, PER_CHANNEL, GAMMA, BETA, HAS_SCALE, NEED_Z, WRITE_DX,
                WRITE_DGAMMA, WRITE_DBETA, RESIDENT, EVICT_FIRST, BLOCK_C, BLOCK_S, STAGES,
            )  # fmt: skip
    else:
        _backward_row(
            tl.program_id(0), dy_ptr, x_ptr, rstd_ptr, offset_ptr, g_ptr, b_ptr, lab_ptr, scale_ptr, dx_ptr, dg_ptr,
            db_ptr, sums_ptr, N, C, S, grid_c, channels_per_program, sdn, sdc, sds, sxn, sxc, sxs, son, soc, sos, sgn,
            sgc, sgs, sbn, sbc, sbs, sln, sls, ssn, ssc, PER_CHANNEL, GAMMA, BETA, HAS_SCALE, NEED_Z, WRITE_DX,
            WRITE_DGAMMA, WRITE_DBETA, RESIDENT, EVICT_FIRST, BLOCK_C, BLOCK_S, STAGES,
        )  # fmt: skip


@triton.jit
def _backward_row(row, dy_ptr, x_ptr, rstd_ptr, offset_ptr, g_ptr, b_ptr, lab_ptr, scale_ptr, dx_ptr, dg_ptr, db_ptr,
                  sums_ptr, N, C, S, grid_c, channels_per_program, sdn, sdc, sds, sxn, sxc, sxs, son, soc, sos, sgn,
                  sgc, sgs, sbn, sbc, sbs, sln, sls, ssn, ssc, PER_CHANNEL: tl.constexpr, GAMMA: tl.constexpr,
                  BETA: tl.constexpr, HAS_SCALE: tl.constexpr, NEED_Z: tl.constexpr, WRITE_DX: tl.constexpr,
                  WRITE_DGAMMA: tl.constexpr, WRITE_DBETA: tl.constexpr, RESIDENT: tl.constexpr,
                  EVICT_FIRST: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
                  STAGES: tl.constexpr):  # fmt: skip
    """One row of the backward: its sums (stored) and its gradient maps."""
    n, c, c_mask, c2 = _row_channels(row, grid_c, C, channels_per_program, BLOCK_C)
    if GAMMA == VECTOR:
        g_ptr = _vector_values(g_ptr, n, c, c_mask, sgn, sgc)
    if BETA == VECTOR:
        b_ptr = _vector_values(b_ptr, n, c, c_mask, sbn, sbc)
    rstd_c = tl.load(rstd_ptr + n * C + c, mask=c_mask, other=0.0)
    rstd = rstd_c[:, None]
    offset = tl.load(offset_ptr + n * C + c, mask=c_mask, other=0.0)[:, None]
    scale = _per_channel(scale_ptr, n, c, c_mask, ssn, ssc, BLOCK_C, HAS_SCALE)
    if RESIDENT:
        s = tl.arange(0, BLOCK_S)
        s_mask = s < S
        s2 = s.to(tl.int64)[None, :]
        mask = c_mask[:, None] & s_mask[None, :]
        dy = tl.load(dy_ptr + n * sdn + c2 * sdc + s2 * sds, mask=mask, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + n * sxn + c2 * sxc + s2 * sxs, mask=mask, other=0.0).to(tl.float32)
        sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz = _tile_grad_sums(
            dy, x, g_ptr, b_ptr, lab_ptr, n, c2, s, s2, s_mask, mask, rstd, offset, scale, sgn, sgc, sgs, sbn,
            sbc, sbs, sln, sls, GAMMA, BETA, HAS_SCALE, NEED_Z, BLOCK_S,
        )  # fmt: skip
        coef_x, coef_0 = _store_row_sums(sums_ptr, sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz, rstd_c, n, c,
                                         c_mask, N, C, S, PER_CHANNEL)  # fmt: skip
        _store_input_grads(
            dy, x, g_ptr, lab_ptr, dx_ptr, dg_ptr, db_ptr, n, c2, s, s2, s_mask, mask, rstd, offset, coef_x,
            coef_0, scale, son, soc, sos, sgn, sgc, sgs, sln, sls, GAMMA, True, HAS_SCALE, WRITE_DX,
            WRITE_DGAMMA, WRITE_DBETA, BLOCK_S, EVICT_FIRST,
        )  # fmt: skip
    else:
        sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz = _grad_sums(
            dy_ptr, x_ptr, g_ptr, b_ptr, lab_ptr, n, c2, c_mask, rstd, offset, scale, 0, S, sdn, sdc, sds, sxn,
            sxc, sxs, sgn, sgc, sgs, sbn, sbc, sbs, sln, sls, GAMMA, BETA, HAS_SCALE, NEED_Z, BLOCK_C, BLOCK_S,
            STAGES,
        )  # fmt: skip
        coef_x, coef_0 = _store_row_sums(sums_ptr, sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz, rstd_c, n, c,
                                         c_mask, N, C, S, PER_CHANNEL)  # fmt: skip
        num_chunks = tl.cdiv(S, BLOCK_S)
        for i in tl.range(0, num_chunks, num_stages=STAGES):
            s = (num_chunks - 1 - i) * BLOCK_S + tl.arange(0, BLOCK_S)  # reverse: the last tiles read are cached
            s_mask = s < S
            mask = c_mask[:, None] & s_mask[None, :]
            _input_grad_tile(
                dy_ptr, x_ptr, g_ptr, lab_ptr, dx_ptr, dg_ptr, db_ptr, n, c2, s, s.to(tl.int64)[None, :], s_mask,
                mask, rstd, offset, coef_x, coef_0, scale, sdn, sdc, sds, sxn, sxc, sxs, son, soc, sos, sgn, sgc,
                sgs, sln, sls, GAMMA, True, HAS_SCALE, WRITE_DX, WRITE_DGAMMA, WRITE_DBETA, BLOCK_S, EVICT_FIRST,
            )  # fmt: skip
