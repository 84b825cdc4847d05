"""Forward kernel: y = x * scale + shift, then the modulation ``* (1 + gamma) + beta``, in one pass over memory.

``scale = rstd`` and ``shift = -mean * rstd`` are per (n, c) (row stride 0 for per-channel batch statistics), so one
kernel serves every statistics kind. gamma and beta are either strided tensors (full maps, per-(n, c) or per-channel
vectors through zero strides) or rows of (K, C) class tables gathered by the label map (CLADE), which the kernel
reads itself: a table lookup moves half the bytes of a spatial map.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .tiles import NONE, TABLE, TENSOR, _elementwise_tile, _labels, _modulation

__all__ = ["NONE", "TABLE", "TENSOR", "_modulate_fwd_kernel"]


@triton.jit
def _modulate_fwd_kernel(
    x_ptr,  # activations, (n, c, s) at n * sxn + c * sxc + s * sxs
    y_ptr,  # out: same shape, its own strides
    scale_ptr,  # fp32 rstd per (n, c): n * stat_sn + c
    shift_ptr,  # fp32 -mean * rstd per (n, c)
    g_ptr,  # gamma (see _modulation)
    b_ptr,  # beta
    lab_ptr,  # int class ids (n, s) at n * sln + s * sls, for tables
    C,
    S,
    sxn,
    sxc,
    sxs,
    syn,
    syc,
    sys_,
    stat_sn,
    sgn,
    sgc,
    sgs,
    sbn,
    sbc,
    sbs,
    sln,
    sls,
    GAMMA: tl.constexpr,
    BETA: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    n, c, s, c_mask, s_mask, mask, c2, s2 = _elementwise_tile(C, S, BLOCK_C, BLOCK_S)
    x = tl.load(x_ptr + n * sxn + c2 * sxc + s2 * sxs, mask=mask, other=0.0).to(tl.float32)
    scale = tl.load(scale_ptr + n * stat_sn + c, mask=c_mask, other=0.0)
    shift = tl.load(shift_ptr + n * stat_sn + c, mask=c_mask, other=0.0)
    y = x * scale[:, None] + shift[:, None]
    labels = _labels(lab_ptr, n, s, s_mask, sln, sls, BLOCK_S, GAMMA == 2 or BETA == 2)
    if GAMMA != 0:
        y = y + y * _modulation(g_ptr, n, c2, s2, labels, mask, sgn, sgc, sgs, GAMMA)
    if BETA != 0:
        y = y + _modulation(b_ptr, n, c2, s2, labels, mask, sbn, sbc, sbs, BETA)
    tl.store(y_ptr + n * syn + c2 * syc + s2 * sys_, y.to(y_ptr.dtype.element_ty), mask=mask)
