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

from .common import _elementwise_tile, _offsets, _per_channel_inputs, _statistics, _store_output


@triton.jit
def _modulate_fwd_kernel(
    x_ptr,  # activations (strides xs)
    y_ptr,  # out: the output (strides ys)
    stats_ptr,  # fp32 (2, N or 1, C) rstd and offset (strides st)
    g_ptr,  # gamma (common._modulation), or None
    b_ptr,  # beta, or None
    lab_ptr,  # class ids (n, s) of the tables, or None
    scale_ptr,  # second modulation's scale per (n, c), or None
    shift_ptr,  # second modulation's shift per (n, c), or None
    shape,  # (N, C, S)
    xs,
    ys,
    st,
    gs,
    bs,
    ls,
    ss,
    ts,
    GAMMA: tl.constexpr,
    BETA: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    """One-axis grid over (n, channel block, position block)."""
    n, c, s, c_mask, s_mask, mask, c2, s2 = _elementwise_tile(shape[1], shape[2], BLOCK_C, BLOCK_S)
    rstd, offset = _statistics(stats_ptr, st, n, c, c_mask)
    g_ptr, b_ptr, scale, shift = _per_channel_inputs(g_ptr, gs, b_ptr, bs, scale_ptr, ss, shift_ptr, ts, n, c, c_mask,
                                                     GAMMA, BETA)  # fmt: skip
    scale = scale if scale_ptr is not None else None
    shift = shift if shift_ptr is not None else None
    x = tl.load(x_ptr + _offsets(xs, n, c2, s2), mask=mask, other=0.0).to(tl.float32)
    _store_output(x, y_ptr, ys, g_ptr, gs, b_ptr, bs, lab_ptr, ls, n, c2, s, s2, s_mask, mask, rstd[:, None],
                  offset[:, None], scale, shift, GAMMA, BETA, BLOCK_S, False)  # fmt: skip
