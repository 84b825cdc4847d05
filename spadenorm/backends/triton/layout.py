"""Strided (N, C, S) views of activations and modulation tensors, and the launch geometry of the kernels.

Every kernel addresses element (n, c, s) of a tensor as ``ptr + n * stride_n + c * stride_c + s * stride_s``, with
S the flattened spatial dimensions. That covers NCHW (``stride_s = 1``), channels_last (``stride_c = 1``) and
broadcast gamma/beta (a stride of 0 on every broadcast dimension) without copies. A tensor whose spatial dimensions
cannot be flattened into one stride (rare: a sliced view) is copied to x's memory format first.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
from torch import Tensor

# Programs that keep every SM of an H100/H200 busy with a few waves; the reduction kernels split S until a launch
# has at least this many programs. Under the interpreter one program per (n, channel block) is fastest.
TARGET_PROGRAMS_GPU = 4 * 132


class Strides(NamedTuple):
    """Strides of the (N, C, S) view of a tensor; 0 on broadcast dimensions."""

    n: int
    c: int
    s: int


class Tiles(NamedTuple):
    """A [block_c, block_s] tile; ``span`` positions of S per program in the reduction kernels."""

    block_c: int
    block_s: int
    span: int


class RowTiles(NamedTuple):
    """Launch geometry of the row-persistent kernels: grid (N, grid_c), each program owning whole sets."""

    grid_c: int
    channels_per_program: int
    block_c: int
    block_s: int


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


def _spatial_stride(t: Tensor) -> int | None:
    """The single stride of t's flattened spatial dims, 0 if they are all size 1, None if they do not flatten."""
    dims = [(size, stride) for size, stride in zip(t.shape[2:], t.stride()[2:], strict=True) if size != 1]
    if not dims:
        return 0
    for (_, outer), (inner_size, inner) in itertools.pairwise(dims):
        if outer != inner * inner_size:
            return None
    return dims[-1][1]


def ncs_strides(t: Tensor) -> Strides:
    """Strides of t (rank >= 3, sizes 1 or equal to x's) as an (N, C, S) view; broadcast dimensions get 0."""
    spatial = _spatial_stride(t)
    if spatial is None:
        raise ValueError(f"spatial dimensions of a tensor with strides {t.stride()} cannot be flattened")
    return Strides(t.stride(0) if t.shape[0] != 1 else 0, t.stride(1) if t.shape[1] != 1 else 0, spatial)


def as_flattenable(t: Tensor, like: Tensor) -> Tensor:
    """t itself when its spatial dims flatten into one stride, else a copy in ``like``'s memory format."""
    if _spatial_stride(t) is not None:
        return t
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last):
        return t.contiguous(memory_format=torch.channels_last)
    if like.dim() == 5 and like.is_contiguous(memory_format=torch.channels_last_3d):
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t.contiguous()


def spatial_size(x: Tensor) -> int:
    """S, the number of positions per (n, c)."""
    return x[0, 0].numel() if x.shape[0] and x.shape[1] else 0


def choose_tiles(
    x: Tensor, strides: Strides, *, interpreter: bool, min_block_c: int = 1, max_span: int | None = None
) -> Tiles:
    """Tiles that read memory contiguously: long along S for NCHW, wide along C for channels_last.

    The reduction kernels split S into spans until the launch has about :data:`TARGET_PROGRAMS_GPU` programs (one
    span under the interpreter). ``min_block_c`` (16 for kernels using ``tl.dot``) and ``max_span`` constrain it.
    """
    n, c, s = x.shape[0], x.shape[1], spatial_size(x)
    if strides.c == 1 and strides.s != 1:  # channels_last: C is the contiguous axis
        block_c = max(min_block_c, min(64, next_pow2(c)))
        block_s = max(16, min(next_pow2(s), 2048 // block_c))
    else:
        block_s = max(16, min(1024, next_pow2(s)))
        block_c = max(min_block_c, min(next_pow2(c), max(1, 2048 // block_s)))
    blocks_s = cdiv(s, block_s)
    parts = 1 if interpreter else min(blocks_s, max(1, cdiv(TARGET_PROGRAMS_GPU, n * cdiv(c, block_c))))
    span = cdiv(blocks_s, parts) * block_s
    if max_span is not None:
        span = max(block_s, min(span, max_span // block_s * block_s))
    return Tiles(block_c, block_s, span)


def reduction_grid(x: Tensor, tiles: Tiles, span: int) -> tuple[int, int, int]:
    """(N, channel blocks, spans of S): N on axis 0, whose limit is 2**31 - 1."""
    return (x.shape[0], cdiv(x.shape[1], tiles.block_c), cdiv(spatial_size(x), span))


def elementwise_grid(x: Tensor, tiles: Tiles) -> tuple[int]:
    """One axis enumerating (n, channel block, position block): no axis bounded by 65535 carries the batch."""
    return (x.shape[0] * cdiv(x.shape[1], tiles.block_c) * cdiv(spatial_size(x), tiles.block_s),)


def row_tiles(x: Tensor, strides: Strides, groups: int) -> RowTiles | None:
    """Geometry of the row-persistent kernels for ``groups`` statistics per sample, or None when they do not apply.

    Instance statistics (``groups == C``): BLOCK_C channels per program, channels_last narrowing its channel tiles
    (>= 16, whole sectors) for more programs. Group statistics: one group per program, groups of at most 64
    channels (layer statistics are one group).
    """
    n, c, s = x.shape[0], x.shape[1], spatial_size(x)
    if groups != c:
        per_group = c // groups
        if per_group > 64:
            return None
        block_c = next_pow2(per_group)
        return RowTiles(groups, per_group, block_c, max(16, min(next_pow2(s), max(16, 2048 // block_c))))
    tiles = choose_tiles(x, strides, interpreter=True)  # one span: the row kernel loops over S itself
    block_c, block_s = tiles.block_c, tiles.block_s
    if strides.c == 1 and strides.s != 1:
        while block_c > 16 and n * cdiv(c, block_c) < TARGET_PROGRAMS_GPU // 2:
            block_c //= 2
        block_s = max(16, min(next_pow2(s), 2048 // block_c))
    return RowTiles(cdiv(c, block_c), block_c, block_c, block_s)
