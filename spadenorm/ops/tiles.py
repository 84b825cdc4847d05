"""``@triton.jit`` helpers shared by the kernels: tile loads of modulation and labels, and Chan's tile merge."""

from __future__ import annotations

import triton
import triton.language as tl

NONE, TENSOR, TABLE = 0, 1, 2


@triton.jit
def _modulation(
    ptr,  # gamma or beta: strided tensor (KIND 1) or (K, C) table (KIND 2)
    n,
    c,
    s,
    labels,
    mask,
    sn,  # batch stride (tensor) or row stride (table)
    sc,
    ss,
    KIND: tl.constexpr,
):
    """[BLOCK_C, BLOCK_S] fp32 values of gamma or beta at channels c (column) and positions s (row)."""
    if KIND == 1:
        return tl.load(ptr + n * sn + c * sc + s * ss, mask=mask, other=0.0).to(tl.float32)
    else:
        return tl.load(ptr + labels * sn + c * sc, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _labels(lab_ptr, n, s, s_mask, sln, sls, BLOCK_S: tl.constexpr, NEEDED: tl.constexpr):
    """[1, BLOCK_S] int64 class ids at positions s (zeros when no table is used)."""
    labels = tl.zeros([1, BLOCK_S], dtype=tl.int64)
    if NEEDED:
        labels = tl.load(lab_ptr + n * sln + s.to(tl.int64) * sls, mask=s_mask, other=0).to(tl.int64)[None, :]
    return labels


@triton.jit
def _scaled_grad(dy, g_ptr, lab_ptr, n, c2, s, s2, s_mask, mask, sgn, sgc, sgs, sln, sls, GAMMA: tl.constexpr,
                 BLOCK_S: tl.constexpr):  # fmt: skip
    """g = dy * (1 + gamma) on a tile."""
    if GAMMA == 0:
        return dy
    else:
        labels = _labels(lab_ptr, n, s, s_mask, sln, sls, BLOCK_S, GAMMA == 2)
        return dy + dy * _modulation(g_ptr, n, c2, s2, labels, mask, sgn, sgc, sgs, GAMMA)


@triton.jit
def _merge_tile(count, mean, m2, x, mask, s_mask):
    """Chan et al.: merge per-channel (count, mean, M2) with a [BLOCK_C, BLOCK_S] tile's own, centred in registers."""
    tile_count = tl.sum(s_mask.to(tl.float32), axis=0)
    tile_mean = tl.sum(x, axis=1) / tile_count
    dev = tl.where(mask, x - tile_mean[:, None], 0.0)
    total = count + tile_count
    delta = tile_mean - mean
    mean = mean + delta * (tile_count / total)
    m2 = m2 + tl.sum(dev * dev, axis=1) + delta * delta * (count * tile_count / total)
    return total, mean, m2


@triton.jit
def _moments(x_ptr, n, c2, c_mask, start, end, sxn, sxc, sxs, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """Per-channel (count, mean, M2) of x over positions [start, end), tile by tile."""
    count = tl.zeros([BLOCK_C], dtype=tl.float32)
    mean = tl.zeros([BLOCK_C], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for s0 in tl.range(start, end, BLOCK_S, num_stages=3):  # software-pipelined loads
        s = s0 + tl.arange(0, BLOCK_S)
        s_mask = s < end
        mask = c_mask[:, None] & s_mask[None, :]
        x = tl.load(x_ptr + n * sxn + c2 * sxc + s.to(tl.int64)[None, :] * sxs, mask=mask, other=0.0).to(tl.float32)
        count, mean, m2 = _merge_tile(count, mean, m2, x, mask, s_mask)
    return count, mean, m2


@triton.jit
def _grad_sums(dy_ptr, x_ptr, g_ptr, lab_ptr, n, c2, c_mask, scale, shift, start, end, sdn, sdc, sds, sxn, sxc, sxs,
               sgn, sgc, sgs, sln, sls, GAMMA: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):  # fmt: skip
    """Per-channel sums over [start, end) of dy, dy * x_hat, g and g * x_hat (x_hat = x * scale + shift)."""
    sum_dy = tl.zeros([BLOCK_C], dtype=tl.float32)
    sum_dyx = tl.zeros([BLOCK_C], dtype=tl.float32)
    sum_g = tl.zeros([BLOCK_C], dtype=tl.float32)
    sum_gx = tl.zeros([BLOCK_C], dtype=tl.float32)
    for s0 in tl.range(start, end, BLOCK_S, num_stages=3):  # software-pipelined loads
        s = s0 + tl.arange(0, BLOCK_S)
        s_mask = s < end
        mask = c_mask[:, None] & s_mask[None, :]
        s2 = s.to(tl.int64)[None, :]
        dy = tl.load(dy_ptr + n * sdn + c2 * sdc + s2 * sds, mask=mask, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + n * sxn + c2 * sxc + s2 * sxs, mask=mask, other=0.0).to(tl.float32)
        x_hat = x * scale + shift
        g = _scaled_grad(dy, g_ptr, lab_ptr, n, c2, s, s2, s_mask, mask, sgn, sgc, sgs, sln, sls, GAMMA, BLOCK_S)
        sum_dy += tl.sum(dy, axis=1)
        sum_dyx += tl.sum(dy * x_hat, axis=1)
        sum_g += tl.sum(g, axis=1)
        sum_gx += tl.sum(g * x_hat, axis=1)
    return sum_dy, sum_dyx, sum_g, sum_gx


@triton.jit
def _elementwise_tile(C, S, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """Indices of an elementwise program's [BLOCK_C, BLOCK_S] tile: grid (S blocks, channel blocks, N).

    S blocks go on grid axis 0, whose limit is 2**31 - 1 (axes 1 and 2 stop at 65535).
    Returns n, c, s, c_mask, s_mask, mask and the int64 column / row offsets c2 [BLOCK_C, 1], s2 [1, BLOCK_S].
    """
    s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    n = tl.program_id(2).to(tl.int64)
    c_mask = c < C
    s_mask = s < S
    mask = c_mask[:, None] & s_mask[None, :]
    return n, c, s, c_mask, s_mask, mask, c.to(tl.int64)[:, None], s.to(tl.int64)[None, :]


@triton.jit
def _row_channels(C, channels_per_program, BLOCK_C: tl.constexpr):
    """Sample and channels of a row-persistent program: grid (N, channel blocks or groups).

    Returns n, c, c_mask and the int64 column offsets c2 [BLOCK_C, 1].
    """
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * channels_per_program + tl.arange(0, BLOCK_C)
    c_mask = (c < C) & (tl.arange(0, BLOCK_C) < channels_per_program)
    return n, c, c_mask, c.to(tl.int64)[:, None]
