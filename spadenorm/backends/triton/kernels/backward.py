"""Backward kernels of the two-phase path and of CLADE's tables.

With ``x_hat = x * rstd + offset``, ``z = x_hat * (1 + gamma) + beta``, ``dz = dy * (1 + scale)`` and
``g = dz * (1 + gamma)``:

* :func:`_backward_sums_kernel` reduces, per (n, c) and span of S, the sums the gradients need: ``sum dz``,
  ``sum dz * x_hat`` (vector dbeta and dgamma), ``sum g`` and ``sum g * x_hat`` (the dx projections), ``sum dy``
  (dshift) and ``sum dy * z`` (dscale).
* :func:`_backward_dx_kernel` writes ``dx = g * rstd + x_hat * coef_x + coef_0`` (``coef_x = -rstd * mean(g
  x_hat)``, ``coef_0 = -rstd * mean(g)`` over each channel's reduction set with statistics of x, absent with running
  statistics) and, for spatial maps, ``dgamma = dz * x_hat`` and (under a scale) ``dbeta = dz``. Without a scale,
  dbeta of a spatial beta is ``dy`` itself and needs no kernel. The coefficients come either as tensors (computed
  by the caller, e.g. after an all-reduce for sync-batch) or, pooled by each program itself, from the sums kernel's
  unreduced partials: no launch between the two kernels.
* :func:`_class_table_grad_chunked_kernel` sums ``dz * x_hat`` and ``dz`` per class for CLADE's tables, visiting
  only the classes present in each tile (see its docstring); :func:`_class_table_grad_kernel`, the previous kernel,
  turns each label tile into a one-hot [BLOCK_S, BLOCK_K] matrix over every class and accumulates ``tl.dot``
  products ("tf32x3"). Both write partial tables that torch sums: deterministic, no atomics.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import (
    ABSENT,
    GIVEN,
    POOLED,
    VECTOR,
    _elementwise_tile,
    _grad_sums,
    _input_grad_tile,
    _per_channel,
    _set_members,
    _vector_values,
)


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
    STAGES: tl.constexpr,  # pipeline depth (2 with NEED_Z, whose extra tiles would spill at 3)
):
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    part = tl.program_id(2)
    c_mask = c < C
    c2 = c.to(tl.int64)[:, None]
    rstd = tl.load(rstd_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    offset = tl.load(offset_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    scale = _per_channel(scale_ptr, n, c, c_mask, ssn, ssc, BLOCK_C, HAS_SCALE)
    if GAMMA == VECTOR:
        g_ptr = _vector_values(g_ptr, n, c, c_mask, sgn, sgc)
    if BETA == VECTOR:
        b_ptr = _vector_values(b_ptr, n, c, c_mask, sbn, sbc)
    start = part * span
    sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz = _grad_sums(
        dy_ptr, x_ptr, g_ptr, b_ptr, lab_ptr, n, c2, c_mask, rstd, offset, scale, start, tl.minimum(start + span, S),
        sdn, sdc, sds, sxn, sxc, sxs, sgn, sgc, sgs, sbn, sbc, sbs, sln, sls, GAMMA, BETA, HAS_SCALE, NEED_Z,
        BLOCK_C, BLOCK_S, STAGES,
    )  # fmt: skip
    out = (n * C + c) * P + part
    plane = tl.cast(N, tl.int64) * C * P
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
    coef_x_ptr,  # fp32 -rstd * mean(g * x_hat) per (n, c), row stride coef_sn (COEF == GIVEN), or None
    coef_0_ptr,  # fp32 -rstd * mean(g) per (n, c) (COEF == GIVEN), or None
    partials_ptr,  # fp32 (6, N, C, P) partial sums of the sums kernel (COEF == POOLED), or None
    g_ptr,  # gamma (tensor or table), or None
    lab_ptr,  # class ids for tables, or None
    scale_ptr,  # second-modulation scale per (n, c), or None
    dx_ptr,  # out: dx with strides so* (WRITE_DX), or None
    dg_ptr,  # out: dz * x_hat with strides so* (WRITE_DGAMMA), or None
    db_ptr,  # out: dz with strides so* (WRITE_DBETA), or None
    N,
    C,
    S,
    P,  # partial sums per (n, c) (COEF == POOLED)
    members,  # partials per reduction set: N * P (batch) or group_size * P (per sample)
    group_size,  # channels per set of a sample (1: instance)
    set_size,  # positions per reduction set (float)
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
    COEF: tl.constexpr,  # ABSENT (no coefficients), GIVEN (tensors) or POOLED (from the partial sums)
    BATCH: tl.constexpr,  # POOLED: the sets are channels over the batch
    HAS_SCALE: tl.constexpr,
    WRITE_DX: tl.constexpr,
    WRITE_DGAMMA: tl.constexpr,
    WRITE_DBETA: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_M: tl.constexpr,  # POOLED: partials pooled per step
):
    n, c, s, c_mask, s_mask, mask, c2, s2 = _elementwise_tile(C, S, BLOCK_C, BLOCK_S)
    if GAMMA == VECTOR:
        g_ptr = _vector_values(g_ptr, n, c, c_mask, sgn, sgc)
    rstd_c = tl.load(rstd_ptr + n * stat_sn + c, mask=c_mask, other=0.0)
    rstd = rstd_c[:, None]
    offset = tl.load(offset_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    if COEF == POOLED:
        coef_x, coef_0 = _pooled_coefficients(partials_ptr, n, c, c_mask, rstd_c, N, C, P, members, group_size,
                                              set_size, BATCH, BLOCK_C, BLOCK_M)  # fmt: skip
    else:
        coef_x = _per_channel(coef_x_ptr, n, c, c_mask, coef_sn, 1, BLOCK_C, COEF == GIVEN)
        coef_0 = _per_channel(coef_0_ptr, n, c, c_mask, coef_sn, 1, BLOCK_C, COEF == GIVEN)
    scale = _per_channel(scale_ptr, n, c, c_mask, ssn, ssc, BLOCK_C, HAS_SCALE)
    _input_grad_tile(
        dy_ptr, x_ptr, g_ptr, lab_ptr, dx_ptr, dg_ptr, db_ptr, n, c2, s, s2, s_mask, mask, rstd, offset, coef_x,
        coef_0, scale, sdn, sdc, sds, sxn, sxc, sxs, son, soc, sos, sgn, sgc, sgs, sln, sls,
        GAMMA, COEF != ABSENT, HAS_SCALE, WRITE_DX, WRITE_DGAMMA, WRITE_DBETA, BLOCK_S, False,
    )  # fmt: skip


@triton.jit
def _pooled_coefficients(partials_ptr, n, c, c_mask, rstd, N, C, P, members, group_size, set_size,
                         BATCH: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_M: tl.constexpr):  # fmt: skip
    """dx coefficients [BLOCK_C, 1] of channels c of sample n, pooling the partial sums of g and g * x_hat
    (planes 2 and 3 of the (6, N, C, P) partials) over each channel's reduction set.

    Batch sets: channel c of every sample, ``members = N * P``. Per-sample sets: the ``group_size`` channels of c's
    group in sample n, ``members = group_size * P``.
    """
    plane = tl.cast(N, tl.int64) * C * P
    sum_g = tl.zeros([BLOCK_C], dtype=tl.float32)
    sum_gx = tl.zeros([BLOCK_C], dtype=tl.float32)
    for m0 in range(0, members, BLOCK_M):
        m = m0 + tl.arange(0, BLOCK_M)
        index, _count = _set_members(n, c, m, C, P, 0, 0, group_size, BATCH)
        mask = c_mask[:, None] & (m < members)[None, :]
        sum_g += tl.sum(tl.load(partials_ptr + 2 * plane + index, mask=mask, other=0.0), axis=1)
        sum_gx += tl.sum(tl.load(partials_ptr + 3 * plane + index, mask=mask, other=0.0), axis=1)
    return (-rstd * (sum_gx / set_size))[:, None], (-rstd * (sum_g / set_size))[:, None]


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
    plane = tl.cast(N, tl.int64) * P * C * BLOCK_K
    out = ((n * P + part) * C + c2) * BLOCK_K + k[None, :]
    out_mask = c_mask[:, None] & (k[None, :] < BLOCK_K)
    tl.store(out_ptr + out, acc_gamma, mask=out_mask)
    tl.store(out_ptr + plane + out, acc_beta, mask=out_mask)


@triton.jit
def _split_tf32(v):
    """v = hi + lo with hi exact in tf32 (low 13 mantissa bits cleared): two tf32 products give about fp32 accuracy
    where the other operand (a one-hot matrix) is exact in tf32."""
    hi = (v.to(tl.int32, bitcast=True) & -8192).to(tl.float32, bitcast=True)
    return hi, v - hi


@triton.jit
def _add_to_chunk(out_ptr, plane, base, k_offsets, c_mask, add_gamma, add_beta):
    """out[base + k_offsets] += add (both tables), a read-modify-write of this program's own partial rows."""
    mask = c_mask[:, None] & (k_offsets >= 0)
    tl.store(out_ptr + base + k_offsets, tl.load(out_ptr + base + k_offsets, mask=mask) + add_gamma, mask=mask)
    tl.store(out_ptr + plane + base + k_offsets,
             tl.load(out_ptr + plane + base + k_offsets, mask=mask) + add_beta, mask=mask)  # fmt: skip
    tl.debug_barrier()  # the next read of these rows may come from other threads of the program


@triton.jit
def _class_table_grad_chunked_kernel(
    dy_ptr,  # incoming gradient (strides sd*)
    x_ptr,  # saved activations (strides sx*)
    rstd_ptr,  # fp32 rstd per (n, c)
    offset_ptr,  # fp32 -mean * rstd per (n, c)
    lab_ptr,  # class ids (n, s) at n * sln + s * sls
    scale_ptr,  # second-modulation scale per (n, c), or None
    out_ptr,  # in/out: zeroed fp32 (2, N, P, C, K_pad) partial tables, K_pad a multiple of 16
    N,
    C,
    S,
    P,
    span,
    K_pad,
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
):
    """Per-class sums of dz * x_hat and dz over a span of S, visiting only the classes present in each tile.

    A tile of one class (the common case in real label maps) adds its channel sums to that class's column; a tile
    of several classes runs, for each 16-class chunk between its smallest and largest id that it contains, two tf32
    products per table with a [BLOCK_S, 16] one-hot matrix. Accumulators live in this program's own rows of the
    partial tables (read-modify-write, no atomics, deterministic); the partials are summed in torch.
    """
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    part = tl.program_id(2)
    k16 = tl.arange(0, 16)
    c_mask = c < C
    c2 = c.to(tl.int64)[:, None]
    rstd = tl.load(rstd_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    offset = tl.load(offset_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    scale = _per_channel(scale_ptr, n, c, c_mask, ssn, ssc, BLOCK_C, HAS_SCALE)
    plane = tl.cast(N, tl.int64) * P * C * K_pad
    rows = ((n * P + part) * C + c2) * K_pad  # [BLOCK_C, 1]
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
        v_gamma = tl.where(mask, dz * (x * rstd + offset), 0.0)
        labels = tl.load(lab_ptr + n * sln + s.to(tl.int64) * sls, mask=s_mask, other=0).to(tl.int32)
        lowest = tl.min(tl.where(s_mask, labels, 2147483647), axis=0)
        highest = tl.max(tl.where(s_mask, labels, -1), axis=0)
        if lowest == highest:  # one class: its column gets the channel sums
            column = (lowest // 16) * 16
            hit = (column + k16 == lowest)[None, :]
            _add_to_chunk(out_ptr, plane, rows + column, k16[None, :], c_mask,
                          tl.where(hit, tl.sum(v_gamma, axis=1)[:, None], 0.0),
                          tl.where(hit, tl.sum(dz, axis=1)[:, None], 0.0))  # fmt: skip
        else:
            g_hi, g_lo = _split_tf32(v_gamma)
            b_hi, b_lo = _split_tf32(dz)
            for chunk in range(lowest // 16, highest // 16 + 1):
                in_chunk = (labels[:, None] == chunk * 16 + k16[None, :]) & s_mask[:, None]  # [BLOCK_S, 16]
                if tl.sum(in_chunk.to(tl.int32)) > 0:  # classes absent from the tile cost nothing
                    one_hot = in_chunk.to(tl.float32)
                    add_gamma = tl.dot(g_hi, one_hot, input_precision="tf32")
                    add_gamma = tl.dot(g_lo, one_hot, add_gamma, input_precision="tf32")
                    add_beta = tl.dot(b_hi, one_hot, input_precision="tf32")
                    add_beta = tl.dot(b_lo, one_hot, add_beta, input_precision="tf32")
                    _add_to_chunk(out_ptr, plane, rows + chunk * 16, k16[None, :], c_mask, add_gamma, add_beta)
