"""Forward with given statistics: ``y = (x * scale + shift) * (1 + gamma) + beta`` in one pass over memory.

``scale = rstd`` and ``shift = -mean * rstd`` are fp32 per (n, c) (row stride 0 for per-channel batch or running
statistics), so one kernel serves every statistics kind. gamma and beta are absent, strided tensors (full maps,
per-(n, c) or per-channel vectors through zero strides) or rows of (K, C) class tables gathered by the label map
(CLADE), which the kernel reads itself: a table lookup moves half the bytes of a spatial map.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import _elementwise_tile, _output_tile


@triton.jit
def _modulate_fwd_kernel(
    x_ptr,  # activations, (n, c, s) at n * sxn + c * sxc + s * sxs
    y_ptr,  # out: same shape, its own strides
    scale_ptr,  # fp32 rstd per (n, c): n * stat_sn + c
    shift_ptr,  # fp32 -mean * rstd per (n, c)
    g_ptr,  # gamma, or None (see common._modulation)
    b_ptr,  # beta, or None
    lab_ptr,  # int class ids (n, s) at n * sln + s * sls for tables, or None
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
    scale = tl.load(scale_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    shift = tl.load(shift_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    _output_tile(
        x_ptr, y_ptr, g_ptr, b_ptr, lab_ptr, n, c2, s, s2, s_mask, mask, scale, shift,
        sxn, sxc, sxs, syn, syc, sys_, sgn, sgc, sgs, sbn, sbc, sbs, sln, sls, GAMMA, BETA, BLOCK_S,
    )  # fmt: skip
