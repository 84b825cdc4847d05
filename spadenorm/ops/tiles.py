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
