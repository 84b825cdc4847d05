"""Forward with given statistics: ``y = ((x * rstd + offset) * (1 + gamma) + beta) * (1 + scale) + shift`` in one
pass over memory.

``rstd`` and ``offset = -mean * rstd`` are fp32 per (n, c) (row stride 0 for per-channel batch or running
statistics), so one kernel serves every statistics kind. gamma and beta are absent, strided tensors (full maps,
per-(n, c) or per-channel vectors through zero strides) or rows of (K, C) class tables gathered by the label map
(CLADE), which the kernel reads itself: a table lookup moves half the bytes of a spatial map. scale and shift (the
second modulation, such as a diffusion model's timestep) are absent or per (n, c).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import VECTOR, _elementwise_tile, _output_tile, _per_channel, _vector_values


@triton.jit
def _modulate_fwd_kernel(
    x_ptr,  # activations, (n, c, s) at n * sxn + c * sxc + s * sxs
    y_ptr,  # out: same shape, its own strides
    rstd_ptr,  # fp32 rstd per (n, c): n * stat_sn + c
    offset_ptr,  # fp32 -mean * rstd per (n, c)
    g_ptr,  # gamma, or None (see common._modulation)
    b_ptr,  # beta, or None
    lab_ptr,  # int class ids (n, s) at n * sln + s * sls for tables, or None
    scale_ptr,  # second-modulation scale per (n, c) at n * ssn + c * ssc, or None
    shift_ptr,  # second-modulation shift per (n, c) at n * stn + c * stc, or None
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
    ssn,
    ssc,
    stn,
    stc,
    GAMMA: tl.constexpr,
    BETA: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    HAS_SHIFT: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    n, c, s, c_mask, s_mask, mask, c2, s2 = _elementwise_tile(C, S, BLOCK_C, BLOCK_S)
    if GAMMA == VECTOR:
        g_ptr = _vector_values(g_ptr, n, c, c_mask, sgn, sgc)
    if BETA == VECTOR:
        b_ptr = _vector_values(b_ptr, n, c, c_mask, sbn, sbc)
    rstd = tl.load(rstd_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    offset = tl.load(offset_ptr + n * stat_sn + c, mask=c_mask, other=0.0)[:, None]
    scale = _per_channel(scale_ptr, n, c, c_mask, ssn, ssc, BLOCK_C, HAS_SCALE)
    shift = _per_channel(shift_ptr, n, c, c_mask, stn, stc, BLOCK_C, HAS_SHIFT)
    _output_tile(
        x_ptr, y_ptr, g_ptr, b_ptr, lab_ptr, n, c2, s, s2, s_mask, mask, rstd, offset, scale, shift,
        sxn, sxc, sxs, syn, syc, sys_, sgn, sgc, sgs, sbn, sbc, sbs, sln, sls, GAMMA, BETA, HAS_SCALE, HAS_SHIFT,
        BLOCK_S, False,
    )  # fmt: skip
