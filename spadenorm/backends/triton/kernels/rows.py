"""Row-persistent kernels for per-sample statistics (instance, group): one program owns whole reduction sets.

A program takes BLOCK_C channels of one sample: BLOCK_C separate sets for instance norm, or one group (BLOCK_C >=
channels per group, masked) for group norm. It sweeps S twice: first accumulating Chan-merged (count, mean, M2)
per channel, then, sweeping S in reverse so that the chunks it read last are still in cache, writing the output.
Forward therefore reads x, gamma, beta once from DRAM and writes y (4 passes where the row stays in L2), and the
backward reads dy, x, gamma and writes dx, dgamma (5 passes), with no partial buffers and no second launch. The
second modulation (per-(n, c) scale and shift) costs no pass of its own; its backward reads beta too when the scale
needs a gradient.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import _grad_sums, _input_grad_tile, _moments, _output_tile, _per_channel, _row_channels


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
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    n, c, c_mask, c2 = _row_channels(C, channels_per_program, BLOCK_C)
    count, mean, m2 = _moments(x_ptr, n, c2, c_mask, 0, S, sxn, sxc, sxs, BLOCK_C, BLOCK_S)
    set_mean, set_var = _set_moments(count, mean, m2, c_mask, PER_CHANNEL)
    rstd = tl.div_rn(1.0, tl.sqrt_rn(set_var + eps))  # correctly rounded, as the float64 merge
    offset = -set_mean * rstd
    tl.store(rstd_out_ptr + n * C + c, rstd, mask=c_mask)
    tl.store(offset_out_ptr + n * C + c, offset, mask=c_mask)
    scale = _per_channel(scale_ptr, n, c, c_mask, ssn, ssc, BLOCK_C, HAS_SCALE)
    shift = _per_channel(shift_ptr, n, c, c_mask, stn, stc, BLOCK_C, HAS_SHIFT)
    num_chunks = tl.cdiv(S, BLOCK_S)
    for i in tl.range(0, num_chunks, num_stages=3):
        s = (num_chunks - 1 - i) * BLOCK_S + tl.arange(0, BLOCK_S)  # reverse: the last chunks read are cached
        s_mask = s < S
        mask = c_mask[:, None] & s_mask[None, :]
        _output_tile(
            x_ptr, y_ptr, g_ptr, b_ptr, lab_ptr, n, c2, s, s.to(tl.int64)[None, :], s_mask, mask,
            rstd[:, None], offset[:, None], scale, shift, sxn, sxc, sxs, syn, syc, sys_, sgn, sgc, sgs, sbn, sbc,
            sbs, sln, sls, GAMMA, BETA, HAS_SCALE, HAS_SHIFT, BLOCK_S,
        )  # fmt: skip


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
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    n, c, c_mask, c2 = _row_channels(C, channels_per_program, BLOCK_C)
    rstd_c = tl.load(rstd_ptr + n * C + c, mask=c_mask, other=0.0)
    rstd = rstd_c[:, None]
    offset = tl.load(offset_ptr + n * C + c, mask=c_mask, other=0.0)[:, None]
    scale = _per_channel(scale_ptr, n, c, c_mask, ssn, ssc, BLOCK_C, HAS_SCALE)
    sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz = _grad_sums(
        dy_ptr, x_ptr, g_ptr, b_ptr, lab_ptr, n, c2, c_mask, rstd, offset, scale, 0, S, sdn, sdc, sds, sxn, sxc, sxs,
        sgn, sgc, sgs, sbn, sbc, sbs, sln, sls, GAMMA, BETA, HAS_SCALE, NEED_Z, BLOCK_C, BLOCK_S,
    )  # fmt: skip
    plane = N * C
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
    coef_x = (-rstd_c * mean_gx)[:, None]
    coef_0 = (-rstd_c * mean_g)[:, None]
    num_chunks = tl.cdiv(S, BLOCK_S)
    for i in tl.range(0, num_chunks, num_stages=3):
        s = (num_chunks - 1 - i) * BLOCK_S + tl.arange(0, BLOCK_S)  # reverse: the last chunks read are cached
        s_mask = s < S
        mask = c_mask[:, None] & s_mask[None, :]
        _input_grad_tile(
            dy_ptr, x_ptr, g_ptr, lab_ptr, dx_ptr, dg_ptr, db_ptr, n, c2, s, s.to(tl.int64)[None, :], s_mask, mask,
            rstd, offset, coef_x, coef_0, scale, sdn, sdc, sds, sxn, sxc, sxs, son, soc, sos, sgn, sgc, sgs, sln,
            sls, GAMMA, True, HAS_SCALE, WRITE_DX, WRITE_DGAMMA, WRITE_DBETA, BLOCK_S,
        )  # fmt: skip
