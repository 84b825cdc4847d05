"""Backward kernels of the split-row path and of CLADE's tables.

With ``x_hat = x * rstd + offset``, ``z = x_hat * (1 + gamma) + beta``, ``dz = dy * (1 + scale)`` and
``g = dz * (1 + gamma)``:

* :func:`_backward_sums_kernel` reduces, per (n, c) and span of S, the sums the gradients need: ``sum dz``,
  ``sum dz * x_hat`` (vector dbeta and dgamma), ``sum g`` and ``sum g * x_hat`` (the dx projections), ``sum dy``
  (dshift) and ``sum dy * z`` (dscale).
* :func:`_backward_dx_kernel` writes ``dx = g * rstd + x_hat * coef_x + coef_0`` (``coef_x = -rstd * mean(g
  x_hat)``, ``coef_0 = -rstd * mean(g)`` over each channel's reduction set with statistics of x, absent with running
  statistics) and, for spatial maps, ``dgamma = dz * x_hat`` and (under a scale) ``dbeta = dz``. Without a scale,
  dbeta of a spatial beta is ``dy`` itself and needs no kernel. The coefficients come either as a tensor (computed
  by the caller: the all-reduced ones of sync-batch) or, pooled by each program itself, from the sums kernel's
  unreduced partials: no launch between the two kernels.
* :func:`_class_table_grad_kernel` sums ``dz * x_hat`` and ``dz`` per class for CLADE's tables, visiting only the
  classes present in each tile (see its docstring), into partial tables that torch sums: deterministic, no atomics.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import (
    TENSOR,
    VECTOR,
    _elementwise_tile,
    _grad_sums,
    _offsets,
    _per_channel,
    _per_channel_inputs,
    _set_members,
    _statistics,
    _store_input_grads,
)


@triton.jit
def _backward_sums_kernel(
    dy_ptr,  # incoming gradient (strides dys)
    x_ptr,  # saved activations (strides xs)
    stats_ptr,  # fp32 (2, N or 1, C) rstd and offset (strides st)
    g_ptr,  # gamma (tensor or table, see common._modulation), or None
    b_ptr,  # beta (tensor or table), read for NEED_Z only, or None
    lab_ptr,  # class ids of the tables, or None
    scale_ptr,  # second modulation's scale per (n, c), or None
    out_ptr,  # out: fp32 (6, N, C, P): sum dz, dz*x_hat, g, g*x_hat, dy, dy*z
    shape,  # (N, C, S)
    span,  # positions of S per program
    dys,
    xs,
    st,
    gs,
    bs,
    ls,
    ss,
    GAMMA: tl.constexpr,
    BETA: tl.constexpr,
    NEED_Z: tl.constexpr,  # the scale needs a gradient: sum dy * z, which reads beta
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    """Grid (N, channel blocks, P spans)."""
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    part = tl.program_id(2)
    N, C, S = shape[0], shape[1], shape[2]
    P = tl.num_programs(2)
    c_mask = c < C
    rstd, offset = _statistics(stats_ptr, st, n, c, c_mask)
    g_ptr, b_ptr, scale, _ = _per_channel_inputs(g_ptr, gs, b_ptr, bs, scale_ptr, ss, None, None, n, c, c_mask, GAMMA,
                                                 BETA)  # fmt: skip
    scale = scale if scale_ptr is not None else None
    start = part * span
    sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz = _grad_sums(
        dy_ptr, dys, x_ptr, xs, g_ptr, gs, b_ptr, bs, lab_ptr, ls, n, c.to(tl.int64)[:, None], c_mask, rstd[:, None],
        offset[:, None], scale, start, tl.minimum(start + span, S), GAMMA, BETA, NEED_Z, BLOCK_C, BLOCK_S,
        2 if NEED_Z or GAMMA == TENSOR else 3,  # three or four streamed tiles: 3 stages would spill (Triton 3.6)
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
    dy_ptr,  # incoming gradient (strides dys)
    x_ptr,  # saved activations (strides xs)
    stats_ptr,  # fp32 (2, N or 1, C) rstd and offset (strides st)
    coef_ptr,  # fp32 (2, N or 1, C) coef_x and coef_0 (strides cs), or None
    partials_ptr,  # fp32 (6, N, C, P) partial sums of the sums kernel, pooled here, or None
    g_ptr,  # gamma (tensor or table), or None
    lab_ptr,  # class ids of the tables, or None
    scale_ptr,  # second modulation's scale per (n, c), or None
    dx_ptr,  # out: dx (strides os), or None
    dg_ptr,  # out: dz * x_hat (strides os), or None
    db_ptr,  # out: dz (strides os), or None
    set_size,  # positions per reduction set (float)
    shape,  # (N, C, S)
    pool,  # (P, group_size): partials per (n, c) and channels per set of a sample (1: instance)
    strides,  # (dys, xs, os): the strides of dy, x and the gradient maps
    st,
    cs,
    gs,
    ls,
    ss,
    GAMMA: tl.constexpr,
    BATCH: tl.constexpr,  # pooling: the sets are channels over the batch
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_M: tl.constexpr,  # pooling: partials pooled per step
):
    """One-axis grid over (n, channel block, position block); no coefficients (running statistics) when both
    coef_ptr and partials_ptr are None."""
    n, c, s, c_mask, s_mask, mask, c2, s2 = _elementwise_tile(shape[1], shape[2], BLOCK_C, BLOCK_S)
    dys, xs, os = strides[0], strides[1], strides[2]
    # gamma and scale read apart, as before, not by _per_channel_inputs: read together (before the statistics or
    # after the coefficients), variants of a VECTOR gamma took up to 16 more registers (sm_90, Triton 3.6 to 3.9)
    if GAMMA == VECTOR:
        g_ptr = _per_channel(g_ptr, gs, n, c, c_mask)
    rstd, offset = _statistics(stats_ptr, st, n, c, c_mask)
    coef_x = None
    coef_0 = None
    if partials_ptr is not None:
        coef_x, coef_0 = _pooled_coefficients(partials_ptr, n, c, c_mask, rstd, shape, pool, set_size, BATCH,
                                              BLOCK_C, BLOCK_M)  # fmt: skip
    if coef_ptr is not None:
        given_x, given_0 = _statistics(coef_ptr, cs, n, c, c_mask)
        coef_x = given_x[:, None]
        coef_0 = given_0[:, None]
    scale = None
    if scale_ptr is not None:
        scale = _per_channel(scale_ptr, ss, n, c, c_mask)
    dy = tl.load(dy_ptr + _offsets(dys, n, c2, s2), mask=mask, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + _offsets(xs, n, c2, s2), mask=mask, other=0.0).to(tl.float32)
    _store_input_grads(dy, x, g_ptr, gs, lab_ptr, ls, dx_ptr, dg_ptr, db_ptr, os, n, c2, s, s2, s_mask, mask,
                       rstd[:, None], offset[:, None], coef_x, coef_0, scale, GAMMA, BLOCK_S, False)  # fmt: skip


@triton.jit
def _pooled_coefficients(partials_ptr, n, c, c_mask, rstd, shape, pool, set_size, BATCH: tl.constexpr,
                         BLOCK_C: tl.constexpr, BLOCK_M: tl.constexpr):  # fmt: skip
    """dx coefficients [BLOCK_C, 1] of channels c of sample n, pooling the partial sums of g and g * x_hat
    (planes 2 and 3 of the (6, N, C, P) partials) over each channel's reduction set.

    Batch sets: channel c of every sample, ``N * P`` partials. Per-sample sets: the ``group_size`` channels of c's
    group in sample n, ``group_size * P`` partials.
    """
    N, C = shape[0], shape[1]
    P, group_size = pool[0], pool[1]
    members = N * P if BATCH else group_size * P
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
def _class_table_grad_kernel(
    dy_ptr,  # incoming gradient (strides dys)
    x_ptr,  # saved activations (strides xs)
    stats_ptr,  # fp32 (2, N, C) rstd and offset (strides st)
    lab_ptr,  # class ids (n, s) (strides ls)
    scale_ptr,  # second modulation's scale per (n, c), or None
    out_ptr,  # in/out: zeroed fp32 (2, N, P, C, K_pad) partial tables, K_pad a multiple of 16
    shape,  # (N, C, S)
    span,  # positions of S per program
    k_pad,
    dys,
    xs,
    st,
    ls,
    ss,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    """Per-class sums of dz * x_hat and dz over a span of S, visiting only the classes present in each tile.

    Grid (N, channel blocks, P spans). A tile of one class (the common case in real label maps) adds its channel
    sums to that class's column; a tile of several classes runs, for each 16-class chunk between its smallest and
    largest id that it contains, two tf32 products per table with a [BLOCK_S, 16] one-hot matrix. Accumulators live
    in this program's own rows of the partial tables (read-modify-write, no atomics, deterministic); the partials
    are summed in torch.
    """
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    part = tl.program_id(2)
    N, C, S = shape[0], shape[1], shape[2]
    P = tl.num_programs(2)
    k16 = tl.arange(0, 16)
    c_mask = c < C
    c2 = c.to(tl.int64)[:, None]
    rstd, offset = _statistics(stats_ptr, st, n, c, c_mask)
    rstd = rstd[:, None]
    offset = offset[:, None]
    scale = None
    if scale_ptr is not None:
        scale = _per_channel(scale_ptr, ss, n, c, c_mask)
    plane = tl.cast(N, tl.int64) * P * C * k_pad
    rows = ((n * P + part) * C + c2) * k_pad  # [BLOCK_C, 1]
    start = part * span
    end = tl.minimum(start + span, S)
    for s0 in range(start, end, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        s_mask = s < end
        mask = c_mask[:, None] & s_mask[None, :]
        s2 = s.to(tl.int64)[None, :]
        dz = tl.load(dy_ptr + _offsets(dys, n, c2, s2), mask=mask, other=0.0).to(tl.float32)
        if scale is not None:
            dz = dz + dz * scale
        x = tl.load(x_ptr + _offsets(xs, n, c2, s2), mask=mask, other=0.0).to(tl.float32)
        v_gamma = tl.where(mask, dz * (x * rstd + offset), 0.0)
        labels = tl.load(lab_ptr + n * ls[0] + s.to(tl.int64) * ls[1], mask=s_mask, other=0).to(tl.int32)
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
