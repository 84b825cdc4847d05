"""Statistics kernel: per-(n, c) partial (mean, M2) over spans of S, merged into per-set statistics in torch.

The kernel walks its span of S in [BLOCK_C, BLOCK_S] tiles; each tile's mean and centred M2 come from the tile in
registers (two passes over registers, one over memory) and are merged into the running per-channel values with Chan
et al.'s formula, so rows far longer than a tile keep a centred variance. Splitting S into several spans (``parts``)
fills the GPU when N*C is small; the partials are merged per reduction set (channel group, or channel over the
batch) in float64 by :func:`merge_partials`, deterministically.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .layout import Strides3, Tiling
from .tiles import _moments


@triton.jit
def _stats_partial_kernel(
    x_ptr,  # activations, element (n, c, s) at n * sxn + c * sxc + s * sxs
    mean_ptr,  # out: fp32 (N, C, P) partial means
    m2_ptr,  # out: fp32 (N, C, P) partial sums of squared deviations
    C,
    S,
    P,
    span,  # positions of S per program (a multiple of BLOCK_S)
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


def partial_stats(x: Tensor, strides: Strides3, tiles: Tiling) -> tuple[Tensor, Tensor]:
    """Per-(n, c, part) mean and M2 of x over spans of S."""
    n, c = x.shape[:2]
    s = x[0, 0].numel()
    parts = tiles.parts(s)
    mean = torch.empty((n, c, parts), device=x.device, dtype=torch.float32)
    m2 = torch.empty_like(mean)
    _stats_partial_kernel[tiles.grid(n, c, s, reduce=True)](
        x, mean, m2, c, s, parts, tiles.span, strides.n, strides.c, strides.s,
        BLOCK_C=tiles.block_c, BLOCK_S=tiles.block_s,
    )  # fmt: skip
    return mean, m2


def span_counts(s: int, tiles: Tiling, device: torch.device) -> Tensor:
    """(P,) float64 number of positions in each span of S."""
    starts = torch.arange(tiles.parts(s), device=device, dtype=torch.float64) * tiles.span
    return torch.clamp(s - starts, max=tiles.span)


def merge_partials(mean: Tensor, m2: Tensor, counts: Tensor, norm: str, groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """Chan-merge (N, C, P) partials into each reduction set, in float64.

    Returns flat ``(mean, var, count)``: N*G sets for the row norms (instance G = C, layer G = 1), C for batch norms,
    with the biased variance.
    """
    n, c, parts = mean.shape
    weights = counts.expand(n, c, parts)
    mean, m2 = mean.double(), m2.double()
    if norm in ("batch", "sync_batch"):
        regroup = lambda t: t.permute(1, 0, 2).reshape(c, n * parts)  # noqa: E731
    else:
        regroup = lambda t: t.reshape(n * groups, (c // groups) * parts)  # noqa: E731
    w, mu, sq = regroup(weights), regroup(mean), regroup(m2)
    total = w.sum(-1)
    set_mean = (w * mu).sum(-1) / total
    set_m2 = (sq + w * (mu - set_mean[:, None]) ** 2).sum(-1)
    return set_mean, set_m2 / total
