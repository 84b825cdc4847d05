"""Split-row statistics: per-(n, c) partial moments over spans of S, then a finalize kernel per reduction set.

:func:`_stats_partial_kernel` walks its span of S in [BLOCK_C, BLOCK_S] tiles; each tile's mean and centred M2 come
from the tile in registers and are merged into the running per-channel values with Chan et al.'s formula
(:func:`.common._moments`), so rows far longer than a tile keep a centred variance. Splitting S into P spans fills
the GPU when there are few long rows (batch 1 at high resolution) and for batch statistics.

:func:`_finalize_stats_kernel` merges the partials of each reduction set (a channel over the batch, or a group of a
sample) in two centred passes, writes fp32 ``rstd`` and ``offset = -mean * rstd`` per channel, and updates fp32
running estimates in place: one launch where a merge in torch took about twenty.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import _moments, _set_members


@triton.jit
def _stats_partial_kernel(
    x_ptr,  # activations, element (n, c, s) at n * sxn + c * sxc + s * sxs
    mean_ptr,  # out: fp32 (N, C, P) partial means
    m2_ptr,  # out: fp32 (N, C, P) partial sums of squared deviations
    C,
    S,
    P,
    span,  # positions of S per program
    sxn,
    sxc,
    sxs,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    part = tl.program_id(2)
    c_mask = c < C
    start = part * span
    end = tl.minimum(start + span, S)
    c2 = c.to(tl.int64)[:, None]
    _count, mean, m2 = _moments(x_ptr, n, c2, c_mask, start, end, sxn, sxc, sxs, BLOCK_C, BLOCK_S, 3)
    out = (n * C + c) * P + part
    tl.store(mean_ptr + out, mean, mask=c_mask)
    tl.store(m2_ptr + out, m2, mask=c_mask)


@triton.jit
def _finalize_stats_kernel(
    mean_ptr,  # fp32 (N, C, P) partial means
    m2_ptr,  # fp32 (N, C, P) partial M2
    rstd_ptr,  # out: fp32 rstd, (N, C) per sample or (1, C) for batch sets
    offset_ptr,  # out: fp32 -mean * rstd, same shape
    running_mean_ptr,  # fp32 (C,) running mean, updated in place (RUNNING), or None
    running_var_ptr,  # fp32 (C,) running unbiased variance (RUNNING), or None
    factor_ptr,  # 0-d update factor (FACTOR_FROM_PTR), or None
    factor,  # the update factor as a number (not FACTOR_FROM_PTR)
    N,
    C,
    S,
    P,
    span,
    members,  # partials per set: N * P (batch) or group_size * P
    group_size,
    eps,
    BATCH: tl.constexpr,
    RUNNING: tl.constexpr,
    FACTOR_FROM_PTR: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """Grid (1 or N, channel blocks): each program finalizes the sets of BLOCK_C channels of one sample."""
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    total = tl.zeros([BLOCK_C], dtype=tl.float32)
    weighted = tl.zeros([BLOCK_C], dtype=tl.float32)
    for m0 in range(0, members, BLOCK_M):
        m = m0 + tl.arange(0, BLOCK_M)
        index, count = _set_members(n, c, m, C, P, span, S, group_size, BATCH)
        mask = c_mask[:, None] & (m < members)[None, :]
        count = tl.where(mask, count, 0.0)
        total += tl.sum(count, axis=1)
        weighted += tl.sum(count * tl.load(mean_ptr + index, mask=mask, other=0.0), axis=1)
    total = tl.where(c_mask, total, 1.0)  # channels past C: no set, nothing stored
    set_mean = weighted / total
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for m0 in range(0, members, BLOCK_M):  # centred on the set's mean: no cancellation
        m = m0 + tl.arange(0, BLOCK_M)
        index, count = _set_members(n, c, m, C, P, span, S, group_size, BATCH)
        mask = c_mask[:, None] & (m < members)[None, :]
        dev = tl.load(mean_ptr + index, mask=mask, other=0.0) - set_mean[:, None]
        m2 += tl.sum(tl.where(mask, tl.load(m2_ptr + index, mask=mask, other=0.0) + count * dev * dev, 0.0), axis=1)
    var = m2 / total
    rstd = tl.div_rn(1.0, tl.sqrt_rn(var + eps))
    out = (0 if BATCH else n * C) + c
    tl.store(rstd_ptr + out, rstd, mask=c_mask)
    tl.store(offset_ptr + out, -set_mean * rstd, mask=c_mask)
    if RUNNING:  # torch.nn.BatchNorm: running = running + factor * (batch - running), unbiased variance
        f = tl.load(factor_ptr).to(tl.float32) if FACTOR_FROM_PTR else factor
        unbiased = var * (total / tl.maximum(total - 1.0, 1.0))  # count 1: the biased variance, as torch
        old_mean = tl.load(running_mean_ptr + c, mask=c_mask, other=0.0)
        old_var = tl.load(running_var_ptr + c, mask=c_mask, other=0.0)
        tl.store(running_mean_ptr + c, old_mean + f * (set_mean - old_mean), mask=c_mask)
        tl.store(running_var_ptr + c, old_var + f * (unbiased - old_var), mask=c_mask)
