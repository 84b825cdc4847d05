"""Backward kernels of the two-phase path and of CLADE's tables.

With ``x_hat = x * scale + shift`` and ``g = dy * (1 + gamma)``:

* :func:`_backward_sums_kernel` reduces, per (n, c) and span of S, the four sums the gradients need:
  ``sum dy``, ``sum dy * x_hat`` (vector dbeta and dgamma), ``sum g`` and ``sum g * x_hat`` (the dx projections).
* :func:`_backward_dx_kernel` writes ``dx = g * scale + x_hat * coef_x + coef_0`` (``coef_x = -rstd * mean_S(g
  x_hat)``, ``coef_0 = -rstd * mean_S(g)`` with statistics of x, absent with running statistics) and, for a
  spatial gamma, ``dgamma = dy * x_hat``. dbeta of a spatial beta is ``dy`` itself and needs no kernel.
* :func:`_class_table_grad_kernel` sums ``dy * x_hat`` and ``dy`` per class for CLADE's tables: each program turns
  its label tile into a one-hot [BLOCK_S, BLOCK_K] matrix and accumulates ``tl.dot`` products ("tf32x3"), then
  writes a partial table; the partials are summed in torch. Deterministic, no atomics.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import _elementwise_tile, _grad_sums, _input_grad_tile


@triton.jit
def _backward_sums_kernel(
    dy_ptr,  # incoming gradient, (n, c, s) at n * sdn + c * sdc + s * sds
    x_ptr,  # saved activations
    scale_ptr,  # fp32 rstd per (n, c): n * stat_sn + c
    shift_ptr,  # fp32 -mean * rstd per (n, c)
    g_ptr,  # gamma (tensor or table, see common._modulation), or None
    lab_ptr,  # class ids for tables, or None
    out_ptr,  # out: fp32 (4, N, C, P): sum dy, sum dy*x_hat, sum g, sum g*x_hat
    N,
    C,
    S,
    P,
    span,
    sdn,
    sdc,
    sds,
    sxn,
    sxc,
    sxs,
    stat_sn,
    sgn,
    sgc,
    sgs,
    sln,
    sls,
    GAMMA: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    part = tl.program_id(2)
    c_mask = c < C
    c2 = c.to(tl.int64)[:, None]
    scale = tl.load(scale_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    shift = tl.load(shift_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    start = part * span
    sum_dy, sum_dyx, sum_g, sum_gx = _grad_sums(
        dy_ptr, x_ptr, g_ptr, lab_ptr, n, c2, c_mask, scale, shift, start, tl.minimum(start + span, S),
        sdn, sdc, sds, sxn, sxc, sxs, sgn, sgc, sgs, sln, sls, GAMMA, BLOCK_C, BLOCK_S,
    )  # fmt: skip
    out = (n * C + c) * P + part
    plane = N * C * P
    tl.store(out_ptr + out, sum_dy, mask=c_mask)
    tl.store(out_ptr + plane + out, sum_dyx, mask=c_mask)
    tl.store(out_ptr + 2 * plane + out, sum_g, mask=c_mask)
    tl.store(out_ptr + 3 * plane + out, sum_gx, mask=c_mask)


@triton.jit
def _backward_dx_kernel(
    dy_ptr,  # incoming gradient (strides sd*)
    x_ptr,  # saved activations (strides sx*)
    scale_ptr,  # fp32 rstd per (n, c), row stride stat_sn
    shift_ptr,  # fp32 -mean * rstd per (n, c)
    coef_x_ptr,  # fp32 -rstd * mean_S(g * x_hat) per (n, c), row stride coef_sn (FROM_INPUT), or None
    coef_0_ptr,  # fp32 -rstd * mean_S(g) per (n, c) (FROM_INPUT), or None
    g_ptr,  # gamma (tensor or table), or None
    lab_ptr,  # class ids for tables, or None
    dx_ptr,  # out: dx with strides so* (WRITE_DX), or None
    dg_ptr,  # out: dy * x_hat with strides so* (WRITE_DGAMMA), or None
    C,
    S,
    sdn,
    sdc,
    sds,
    sxn,
    sxc,
    sxs,
    son,
    soc,
    sos,
    stat_sn,
    coef_sn,
    sgn,
    sgc,
    sgs,
    sln,
    sls,
    GAMMA: tl.constexpr,
    FROM_INPUT: tl.constexpr,
    WRITE_DX: tl.constexpr,
    WRITE_DGAMMA: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    n, c, s, c_mask, s_mask, mask, c2, s2 = _elementwise_tile(C, S, BLOCK_C, BLOCK_S)
    scale = tl.load(scale_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    shift = tl.load(shift_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    coef_x = scale  # unused without FROM_INPUT
    coef_0 = shift
    if FROM_INPUT:
        coef_x = tl.load(coef_x_ptr + n * coef_sn + c, mask=c_mask, other=0.0)[:, None]
        coef_0 = tl.load(coef_0_ptr + n * coef_sn + c, mask=c_mask, other=0.0)[:, None]
    _input_grad_tile(
        dy_ptr, x_ptr, g_ptr, lab_ptr, dx_ptr, dg_ptr, n, c2, s, s2, s_mask, mask, scale, shift, coef_x, coef_0,
        sdn, sdc, sds, sxn, sxc, sxs, son, soc, sos, sgn, sgc, sgs, sln, sls,
        GAMMA, FROM_INPUT, WRITE_DX, WRITE_DGAMMA, BLOCK_S,
    )  # fmt: skip


@triton.jit
def _class_table_grad_kernel(
    dy_ptr,  # incoming gradient (strides sd*)
    x_ptr,  # saved activations (strides sx*)
    scale_ptr,  # fp32 rstd per (n, c)
    shift_ptr,  # fp32 -mean * rstd per (n, c)
    lab_ptr,  # class ids (n, s) at n * sln + s * sls
    out_ptr,  # out: fp32 (2, N, P, C, BLOCK_K) partial tables: sum dy * x_hat and sum dy per (class, channel)
    N,
    C,
    S,
    P,
    span,
    sdn,
    sdc,
    sds,
    sxn,
    sxc,
    sxs,
    stat_sn,
    sln,
    sls,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    part = tl.program_id(2)
    k = tl.arange(0, BLOCK_K)
    c_mask = c < C
    c2 = c.to(tl.int64)[:, None]
    scale = tl.load(scale_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    shift = tl.load(shift_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    acc_gamma = tl.zeros([BLOCK_C, BLOCK_K], dtype=tl.float32)
    acc_beta = tl.zeros([BLOCK_C, BLOCK_K], dtype=tl.float32)
    start = part * span
    end = tl.minimum(start + span, S)
    for s0 in range(start, end, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        s_mask = s < end
        mask = c_mask[:, None] & s_mask[None, :]
        s2 = s.to(tl.int64)[None, :]
        dy = tl.load(dy_ptr + n * sdn + c2 * sdc + s2 * sds, mask=mask, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + n * sxn + c2 * sxc + s2 * sxs, mask=mask, other=0.0).to(tl.float32)
        labels = tl.load(lab_ptr + n * sln + s.to(tl.int64) * sls, mask=s_mask, other=-1).to(tl.int32)
        one_hot = (labels[:, None] == k[None, :]).to(tl.float32)  # [BLOCK_S, BLOCK_K]
        # The one-hot operand is exact in tf32; "tf32x3" splits the other into tf32 pieces (about fp32 accuracy,
        # relative error ~2^-21) and runs on tensor cores, where "ieee" would fall back to scalar FMAs.
        acc_gamma = tl.dot(dy * (x * scale + shift), one_hot, acc_gamma, input_precision="tf32x3")
        acc_beta = tl.dot(dy, one_hot, acc_beta, input_precision="tf32x3")
    plane = N * P * C * BLOCK_K
    out = ((n * P + part) * C + c2) * BLOCK_K + k[None, :]
    out_mask = c_mask[:, None] & (k[None, :] < BLOCK_K)
    tl.store(out_ptr + out, acc_gamma, mask=out_mask)
    tl.store(out_ptr + plane + out, acc_beta, mask=out_mask)
