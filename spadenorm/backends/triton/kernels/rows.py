"""Row-persistent kernels for per-sample statistics (instance, group): one program owns whole reduction sets.

A program takes BLOCK_C channels of one sample: BLOCK_C separate sets for instance norm, or one group (BLOCK_C >=
channels per group, masked) for group norm. It sweeps S twice: first accumulating Chan-merged (count, mean, M2)
per channel, then, sweeping S in reverse so that the chunks it read last are still in cache, writing the output.
Forward therefore reads x, gamma, beta once from DRAM and writes y (4 passes where the row stays in L2), and the
backward reads dy, x, gamma and writes dx, dgamma (5 passes), with no partial buffers and no second launch.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import _grad_sums, _input_grad_tile, _moments, _output_tile, _row_channels


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
    scale_out_ptr,  # out: fp32 (N, C) rstd, contiguous
    shift_out_ptr,  # out: fp32 (N, C) -mean * rstd
    g_ptr,  # gamma, or None (see common._modulation)
    b_ptr,  # beta, or None
    lab_ptr,  # class ids (n, s) for tables, or None
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
    PER_CHANNEL: tl.constexpr,
    GAMMA: tl.constexpr,
    BETA: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    n, c, c_mask, c2 = _row_channels(C, channels_per_program, BLOCK_C)
    count, mean, m2 = _moments(x_ptr, n, c2, c_mask, 0, S, sxn, sxc, sxs, BLOCK_C, BLOCK_S)
    set_mean, set_var = _set_moments(count, mean, m2, c_mask, PER_CHANNEL)
    scale = tl.div_rn(1.0, tl.sqrt_rn(set_var + eps))  # correctly rounded, as the float64 merge
    shift = -set_mean * scale
    tl.store(scale_out_ptr + n * C + c, scale, mask=c_mask)
    tl.store(shift_out_ptr + n * C + c, shift, mask=c_mask)
    num_chunks = tl.cdiv(S, BLOCK_S)
    for i in tl.range(0, num_chunks, num_stages=3):
        s = (num_chunks - 1 - i) * BLOCK_S + tl.arange(0, BLOCK_S)  # reverse: the last chunks read are cached
        s_mask = s < S
        mask = c_mask[:, None] & s_mask[None, :]
        _output_tile(
            x_ptr, y_ptr, g_ptr, b_ptr, lab_ptr, n, c2, s, s.to(tl.int64)[None, :], s_mask, mask,
            scale[:, None], shift[:, None], sxn, sxc, sxs, syn, syc, sys_, sgn, sgc, sgs, sbn, sbc, sbs, sln, sls,
            GAMMA, BETA, BLOCK_S,
        )  # fmt: skip


@triton.jit
def _row_bwd_kernel(
    dy_ptr,  # incoming gradient (strides sd*)
    x_ptr,  # saved activations (strides sx*)
    scale_ptr,  # fp32 (N, C) rstd
    shift_ptr,  # fp32 (N, C) -mean * rstd
    g_ptr,  # gamma (tensor or table), or None
    lab_ptr,  # class ids for tables, or None
    dx_ptr,  # out: dx, strides so* (WRITE_DX), or None
    dg_ptr,  # out: dy * x_hat for a spatial gamma, strides so* (WRITE_DGAMMA), or None
    sums_ptr,  # out: fp32 (2, N, C): sum dy, sum dy * x_hat per (n, c)
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
    sln,
    sls,
    PER_CHANNEL: tl.constexpr,
    GAMMA: tl.constexpr,
    WRITE_DX: tl.constexpr,
    WRITE_DGAMMA: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    n, c, c_mask, c2 = _row_channels(C, channels_per_program, BLOCK_C)
    scale_c = tl.load(scale_ptr + n * C + c, mask=c_mask, other=0.0)
    scale = scale_c[:, None]
    shift = tl.load(shift_ptr + n * C + c, mask=c_mask, other=0.0)[:, None]
    sum_dy, sum_dyx, sum_g, sum_gx = _grad_sums(
        dy_ptr, x_ptr, g_ptr, lab_ptr, n, c2, c_mask, scale, shift, 0, S, sdn, sdc, sds, sxn, sxc, sxs,
        sgn, sgc, sgs, sln, sls, GAMMA, BLOCK_C, BLOCK_S,
    )  # fmt: skip
    tl.store(sums_ptr + n * C + c, sum_dy, mask=c_mask)
    tl.store(sums_ptr + N * C + n * C + c, sum_dyx, mask=c_mask)
    if PER_CHANNEL:
        set_size = S * 1.0
        mean_g = sum_g / set_size
        mean_gx = sum_gx / set_size
    else:
        set_size = S * tl.sum(c_mask.to(tl.float32), axis=0)
        mean_g = tl.sum(sum_g, axis=0) / set_size + tl.zeros_like(sum_g)
        mean_gx = tl.sum(sum_gx, axis=0) / set_size + tl.zeros_like(sum_gx)
    coef_x = (-scale_c * mean_gx)[:, None]
    coef_0 = (-scale_c * mean_g)[:, None]
    num_chunks = tl.cdiv(S, BLOCK_S)
    for i in tl.range(0, num_chunks, num_stages=3):
        s = (num_chunks - 1 - i) * BLOCK_S + tl.arange(0, BLOCK_S)  # reverse: the last chunks read are cached
        s_mask = s < S
        mask = c_mask[:, None] & s_mask[None, :]
        _input_grad_tile(
            dy_ptr, x_ptr, g_ptr, lab_ptr, dx_ptr, dg_ptr, n, c2, s, s.to(tl.int64)[None, :], s_mask, mask, scale,
            shift, coef_x, coef_0, sdn, sdc, sds, sxn, sxc, sxs, son, soc, sos, sgn, sgc, sgs, sln, sls,
            GAMMA, True, WRITE_DX, WRITE_DGAMMA, BLOCK_S,
        )  # fmt: skip
