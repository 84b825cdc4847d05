"""Backward kernels of the two-phase path and of CLADE's tables.

With ``x_hat = x * rstd + offset``, ``z = x_hat * (1 + gamma) + beta``, ``dz = dy * (1 + scale)`` and
``g = dz * (1 + gamma)``:

* :func:`_backward_sums_kernel` reduces, per (n, c) and span of S, the sums the gradients need: ``sum dz``,
  ``sum dz * x_hat`` (vector dbeta and dgamma), ``sum g`` and ``sum g * x_hat`` (the dx projections), ``sum dy``
  (dshift) and ``sum dy * z`` (dscale).
* :func:`_backward_dx_kernel` writes ``dx = g * rstd + x_hat * coef_x + coef_0`` (``coef_x = -rstd * mean_S(g
  x_hat)``, ``coef_0 = -rstd * mean_S(g)`` with statistics of x, absent with running statistics) and, for spatial
  maps, ``dgamma = dz * x_hat`` and (under a scale) ``dbeta = dz``. Without a scale, dbeta of a spatial beta is
  ``dy`` itself and needs no kernel.
* :func:`_class_table_grad_kernel` sums ``dz * x_hat`` and ``dz`` per class for CLADE's tables: each program turns
  its label tile into a one-hot [BLOCK_S, BLOCK_K] matrix and accumulates ``tl.dot`` products ("tf32x3"), then
  writes a partial table; the partials are summed in torch. Deterministic, no atomics.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import _elementwise_tile, _grad_sums, _input_grad_tile, _per_channel


@triton.jit
def _backward_sums_kernel(
    dy_ptr,  # incoming gradient, (n, c, s) at n * sdn + c * sdc + s * sds
    x_ptr,  # saved activations
    rstd_ptr,  # fp32 rstd per (n, c): n * stat_sn + c
    offset_ptr,  # fp32 -mean * rstd per (n, c)
    g_ptr,  # gamma (tensor or table, see common._modulation), or None
    b_ptr,  # beta (tensor or table), read for NEED_Z only, or None
    lab_ptr,  # class ids for tables, or None
    scale_ptr,  # second-modulation scale per (n, c), or None
    out_ptr,  # out: fp32 (6, N, C, P): sum dz, dz*x_hat, g, g*x_hat, dy, dy*z
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
    sbn,
    sbc,
    sbs,
    sln,
    sls,
    ssn,
    ssc,
    GAMMA: tl.constexpr,
    BETA: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    NEED_Z: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    part = tl.program_id(2)
    c_mask = c < C
    c2 = c.to(tl.int64)[:, None]
    rstd = tl.load(rstd_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    offset = tl.load(offset_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    scale = _per_channel(scale_ptr, n, c, c_mask, ssn, ssc, BLOCK_C, HAS_SCALE)
    start = part * span
    sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz = _grad_sums(
        dy_ptr, x_ptr, g_ptr, b_ptr, lab_ptr, n, c2, c_mask, rstd, offset, scale, start, tl.minimum(start + span, S),
        sdn, sdc, sds, sxn, sxc, sxs, sgn, sgc, sgs, sbn, sbc, sbs, sln, sls, GAMMA, BETA, HAS_SCALE, NEED_Z,
        BLOCK_C, BLOCK_S,
    )  # fmt: skip
    out = (n * C + c) * P + part
    plane = N * C * P
    tl.store(out_ptr + out, sum_dz, mask=c_mask)
    tl.store(out_ptr + plane + out, sum_dzx, mask=c_mask)
    tl.store(out_ptr + 2 * plane + out, sum_g, mask=c_mask)
    tl.store(out_ptr + 3 * plane + out, sum_gx, mask=c_mask)
    tl.store(out_ptr + 4 * plane + out, sum_dy, mask=c_mask)
    tl.store(out_ptr + 5 * plane + out, sum_dyz, mask=c_mask)


@triton.jit
def _backward_dx_kernel(
    dy_ptr,  # incoming gradient (strides sd*)
    x_ptr,  # saved activations (strides sx*)
    rstd_ptr,  # fp32 rstd per (n, c), row stride stat_sn
    offset_ptr,  # fp32 -mean * rstd per (n, c)
    coef_x_ptr,  # fp32 -rstd * mean_S(g * x_hat) per (n, c), row stride coef_sn (FROM_INPUT), or None
    coef_0_ptr,  # fp32 -rstd * mean_S(g) per (n, c) (FROM_INPUT), or None
    g_ptr,  # gamma (tensor or table), or None
    lab_ptr,  # class ids for tables, or None
    scale_ptr,  # second-modulation scale per (n, c), or None
    dx_ptr,  # out: dx with strides so* (WRITE_DX), or None
    dg_ptr,  # out: dz * x_hat with strides so* (WRITE_DGAMMA), or None
    db_ptr,  # out: dz with strides so* (WRITE_DBETA), or None
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
    ssn,
    ssc,
    GAMMA: tl.constexpr,
    FROM_INPUT: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    WRITE_DX: tl.constexpr,
    WRITE_DGAMMA: tl.constexpr,
    WRITE_DBETA: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    n, c, s, c_mask, s_mask, mask, c2, s2 = _elementwise_tile(C, S, BLOCK_C, BLOCK_S)
    rstd = tl.load(rstd_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    offset = tl.load(offset_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    coef_x = _per_channel(coef_x_ptr, n, c, c_mask, coef_sn, 1, BLOCK_C, FROM_INPUT)
    coef_0 = _per_channel(coef_0_ptr, n, c, c_mask, coef_sn, 1, BLOCK_C, FROM_INPUT)
    scale = _per_channel(scale_ptr, n, c, c_mask, ssn, ssc, BLOCK_C, HAS_SCALE)
    _input_grad_tile(
        dy_ptr, x_ptr, g_ptr, lab_ptr, dx_ptr, dg_ptr, db_ptr, n, c2, s, s2, s_mask, mask, rstd, offset, coef_x,
        coef_0, scale, sdn, sdc, sds, sxn, sxc, sxs, son, soc, sos, sgn, sgc, sgs, sln, sls,
        GAMMA, FROM_INPUT, HAS_SCALE, WRITE_DX, WRITE_DGAMMA, WRITE_DBETA, BLOCK_S,
    )  # fmt: skip


@triton.jit
def _class_table_grad_kernel(
    dy_ptr,  # incoming gradient (strides sd*)
    x_ptr,  # saved activations (strides sx*)
    rstd_ptr,  # fp32 rstd per (n, c)
    offset_ptr,  # fp32 -mean * rstd per (n, c)
    lab_ptr,  # class ids (n, s) at n * sln + s * sls
    scale_ptr,  # second-modulation scale per (n, c), or None
    out_ptr,  # out: fp32 (2, N, P, C, BLOCK_K) partial tables: sum dz * x_hat and sum dz per (class, channel)
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
    ssn,
    ssc,
    HAS_SCALE: tl.constexpr,
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
    rstd = tl.load(rstd_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    offset = tl.load(offset_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    scale = _per_channel(scale_ptr, n, c, c_mask, ssn, ssc, BLOCK_C, HAS_SCALE)
    acc_gamma = tl.zeros([BLOCK_C, BLOCK_K], dtype=tl.float32)
    acc_beta = tl.zeros([BLOCK_C, BLOCK_K], dtype=tl.float32)
    start = part * span
    end = tl.minimum(start + span, S)
    for s0 in range(start, end, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        s_mask = s < end
        mask = c_mask[:, None] & s_mask[None, :]
        s2 = s.to(tl.int64)[None, :]
        dz = tl.load(dy_ptr + n * sdn + c2 * sdc + s2 * sds, mask=mask, other=0.0).to(tl.float32)
        if HAS_SCALE:
            dz = dz + dz * scale
        x = tl.load(x_ptr + n * sxn + c2 * sxc + s2 * sxs, mask=mask, other=0.0).to(tl.float32)
        labels = tl.load(lab_ptr + n * sln + s.to(tl.int64) * sls, mask=s_mask, other=-1).to(tl.int32)
        one_hot = (labels[:, None] == k[None, :]).to(tl.float32)  # [BLOCK_S, BLOCK_K]
        # The one-hot operand is exact in tf32; "tf32x3" splits the other into tf32 pieces (about fp32 accuracy,
        # relative error ~2^-21) and runs on tensor cores, where "ieee" would fall back to scalar FMAs.
        acc_gamma = tl.dot(dz * (x * rstd + offset), one_hot, acc_gamma, input_precision="tf32x3")
        acc_beta = tl.dot(dz, one_hot, acc_beta, input_precision="tf32x3")
    plane = N * P * C * BLOCK_K
    out = ((n * P + part) * C + c2) * BLOCK_K + k[None, :]
    out_mask = c_mask[:, None] & (k[None, :] < BLOCK_K)
    tl.store(out_ptr + out, acc_gamma, mask=out_mask)
    tl.store(out_ptr + plane + out, acc_beta, mask=out_mask)
