"""Partial statistics: per-(n, c) mean and M2 over spans of S, merged per reduction set on the host side.

The kernel walks its span of S in [BLOCK_C, BLOCK_S] tiles; each tile's mean and centred M2 come from the tile in
registers and are merged into the running per-channel values with Chan et al.'s formula (:func:`.common._moments`),
so rows far longer than a tile keep a centred variance. Splitting S into several spans (P parts) fills the GPU when
N*C is small.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import _moments


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
    _count, mean, m2 = _moments(x_ptr, n, c.to(tl.int64)[:, None], c_mask, start, end, sxn, sxc, sxs, BLOCK_C, BLOCK_S)
    out = (n * C + c) * P + part
    tl.store(mean_ptr + out, mean, mask=c_mask)
    tl.store(m2_ptr + out, m2, mask=c_mask)
