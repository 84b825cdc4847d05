r"""Split-row statistics: per-(n, c) partial moments over spans of S, then a finalize kernel per reduction set.

:func:`_stats_partial_kernel` walks its span of S in [BLOCK_C, BLOCK_S] tiles; each tile's mean and centred M2 come
from the tile in registers and are merged into the running per-channel values with Chan et al.'s formula
(:func:`.common._moments`), so rows far longer than a tile keep a centred variance. Splitting S into P spans fills
the GPU when there are few long rows (batch 1 at high resolution) and for batch statistics.

:func:`_finalize_stats_kernel` merges the partials of each reduction set (a channel over the batch, or a group of a
sample) in two centred passes, writes fp32 ``rstd`` and ``offset = -mean * rstd`` per channel, and updates the
running estimates (any float dtype, any stride) in place:

.. math::
    \mathrm{running} \leftarrow \mathrm{running} + f\,(\mathrm{batch} - \mathrm{running}),

the variance unbiased by ``M / (M - 1)`` over the set's M values, as ``torch.nn.BatchNorm2d``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import _moments, _set_members


@triton.jit
def _stats_partial_kernel(
    x_ptr,  # activations (strides xs)
    out_ptr,  # out: fp32 (2, N, C, P) partial means and M2 (sums of squared deviations)
    shape,  # (N, C, S)
    span,  # positions of S per program
    xs,
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
    start = part * span
    end = tl.minimum(start + span, S)
    _count, mean, m2 = _moments(x_ptr, xs, n, c.to(tl.int64)[:, None], c_mask, start, end, BLOCK_C, BLOCK_S, 3)
    out = (n * C + c) * P + part
    tl.store(out_ptr + out, mean, mask=c_mask)
    tl.store(out_ptr + tl.cast(N, tl.int64) * C * P + out, m2, mask=c_mask)


@triton.jit
def _finalize_stats_kernel(
    moments_ptr,  # fp32 (2, N, C, P) partial means and M2
    stats_ptr,  # out: fp32 (2, R, C) rstd and offset, R = 1 for batch sets, else N
    running_mean_ptr,  # (C,) running mean (stride rs[0]), updated in place, or None
    running_var_ptr,  # (C,) running unbiased variance (stride rs[1]), or None
    factor_ptr,  # 0-d update factor, or None (then ``factor``)
    factor,
    eps,
    shape,  # (N, C, S)
    parts,  # (P, span): partials per (n, c) and positions of S per partial
    group_size,  # channels per set of a sample (1 for batch sets)
    rs,  # strides of the running mean and variance
    BATCH: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """Grid (R, channel blocks): each program finalizes the sets of BLOCK_C channels of one sample."""
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    N, C, S = shape[0], shape[1], shape[2]
    P, span = parts[0], parts[1]
    members = N * P if BATCH else group_size * P
    m2_ptr = moments_ptr + tl.cast(N, tl.int64) * C * P
    c_mask = c < C
    total = tl.zeros([BLOCK_C], dtype=tl.float32)
    weighted = tl.zeros([BLOCK_C], dtype=tl.float32)
    for m0 in range(0, members, BLOCK_M):
        m = m0 + tl.arange(0, BLOCK_M)
        index, count = _set_members(n, c, m, C, P, span, S, group_size, BATCH)
        mask = c_mask[:, None] & (m < members)[None, :]
        count = tl.where(mask, count, 0.0)
        total += tl.sum(count, axis=1)
        weighted += tl.sum(count * tl.load(moments_ptr + index, mask=mask, other=0.0), axis=1)
    total = tl.where(c_mask, total, 1.0)  # channels past C: no set, nothing stored
    set_mean = weighted / total
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for m0 in range(0, members, BLOCK_M):  # centred on the set's mean: no cancellation
        m = m0 + tl.arange(0, BLOCK_M)
        index, count = _set_members(n, c, m, C, P, span, S, group_size, BATCH)
        mask = c_mask[:, None] & (m < members)[None, :]
        dev = tl.load(moments_ptr + index, mask=mask, other=0.0) - set_mean[:, None]
        m2 += tl.sum(tl.where(mask, tl.load(m2_ptr + index, mask=mask, other=0.0) + count * dev * dev, 0.0), axis=1)
    var = m2 / total
    rstd = tl.div_rn(1.0, tl.sqrt_rn(var + eps))
    rows = 1 if BATCH else N
    out = (0 if BATCH else n * C) + c
    tl.store(stats_ptr + out, rstd, mask=c_mask)
    tl.store(stats_ptr + tl.cast(rows, tl.int64) * C + out, -set_mean * rstd, mask=c_mask)
    if running_mean_ptr is not None:  # torch.nn.BatchNorm: running += factor * (batch - running), unbiased variance
        # In the estimates' dtype where it is wider than fp32 (float64 estimates keep their digits), else in fp32.
        f = factor
        if factor_ptr is not None:
            f = tl.load(factor_ptr)
        unbiased = var * (total / tl.maximum(total - 1.0, 1.0))  # count 1: the biased variance, as torch
        c64 = c.to(tl.int64)
        old_mean = tl.load(running_mean_ptr + c64 * rs[0], mask=c_mask, other=0.0)
        old_var = tl.load(running_var_ptr + c64 * rs[1], mask=c_mask, other=0.0)
        new_mean = old_mean + f * (set_mean - old_mean)
        new_var = old_var + f * (unbiased - old_var)
        tl.store(running_mean_ptr + c64 * rs[0], new_mean.to(old_mean.dtype), mask=c_mask)
        tl.store(running_var_ptr + c64 * rs[1], new_var.to(old_var.dtype), mask=c_mask)
