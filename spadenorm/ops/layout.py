"""Strided (N, C, S) views of activations and modulation tensors, and launch geometry for the kernels.

Every kernel addresses element (n, c, s) of a tensor as ``ptr + n * stride_n + c * stride_c + s * stride_s``, with
S the flattened spatial dimensions. That covers NCHW (``stride_s = 1``), channels_last (``stride_c = 1``) and
broadcast gamma/beta (a stride of 0 on every broadcast dimension) without copies. A tensor whose spatial dimensions
cannot be flattened into one stride (rare: a sliced view) is copied to x's memory format first.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Strides3:
    """Strides of the (N, C, S) view; 0 on broadcast dimensions."""

    n: int
    c: int
    s: int


def _spatial_stride(t: Tensor) -> int | None:
    """The single stride of t's flattened spatial dims, 0 if they are all size 1, None if they do not flatten."""
    sizes, strides = t.shape[2:], t.stride()[2:]
    dims = [(size, stride) for size, stride in zip(sizes, strides, strict=True) if size != 1]
    if not dims:
        return 0
    for (_, outer), (inner_size, inner) in itertools.pairwise(dims):
        if outer != inner * inner_size:
            return None
    return dims[-1][1]


def flattenable(t: Tensor) -> bool:
    return _spatial_stride(t) is not None


def strides3(t: Tensor) -> Strides3:
    """Strides of t (rank >= 3, sizes 1 or equal to x's) as an (N, C, S) view; broadcast dimensions get 0."""
    spatial = _spatial_stride(t)
    if spatial is None:
        raise ValueError(f"spatial dimensions of a tensor with strides {t.stride()} cannot be flattened")
    return Strides3(t.stride(0) if t.shape[0] != 1 else 0, t.stride(1) if t.shape[1] != 1 else 0, spatial)


def as_flattenable(t: Tensor, like: Tensor) -> Tensor:
    """t itself when its spatial dims flatten into one stride, else a copy in ``like``'s memory format."""
    if flattenable(t):
        return t
    fmt = torch.channels_last if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last) else None
    return t.contiguous(memory_format=fmt) if fmt is not None else t.contiguous()


def is_spatial(t: Tensor) -> bool:
    """Whether a modulation tensor varies over the spatial dimensions (its gradient is then a full map)."""
    return any(size != 1 for size in t.shape[2:])


@dataclass(frozen=True)
class Tiling:
    """Tile of BLOCK_C channels x BLOCK_S positions; SPAN positions per program in the reduction kernels."""

    block_c: int
    block_s: int
    span: int

    def grid(self, n: int, c: int, s: int, *, reduce: bool) -> tuple[int, int, int]:
        """Reduction kernels: (N, channel blocks, spans); elementwise kernels: (S blocks, channel blocks, N), S on
        the axis whose limit is 2**31 - 1 (the other two stop at 65535)."""
        if reduce:
            return (n, triton_cdiv(c, self.block_c), triton_cdiv(s, self.span))
        return (triton_cdiv(s, self.block_s), triton_cdiv(c, self.block_c), n)

    def parts(self, s: int) -> int:
        """Number of partial results along S in the reduction kernels."""
        return triton_cdiv(s, self.span)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


# Programs that keep every SM of an H100/H200 busy with a few waves; the reduction kernels split S until a launch
# has at least this many programs. Under the interpreter one program per (n, channel block) is fastest.
TARGET_PROGRAMS_GPU = 4 * 132


def tiling(
    n: int,
    c: int,
    s: int,
    x_strides: Strides3,
    *,
    interpreter: bool,
    min_block_c: int = 1,
    max_span: int | None = None,
) -> Tiling:
    """Choose tiles that read memory contiguously: long along S for NCHW, wide along C for channels_last.

    ``min_block_c`` (16 for kernels using ``tl.dot``) and ``max_span`` (tests force several partials) constrain it.
    """
    if x_strides.c == 1 and x_strides.s != 1:  # channels_last: C is the contiguous axis
        block_c = max(min_block_c, min(64, next_pow2(c)))
        block_s = max(16, min(next_pow2(s), 2048 // block_c))
    else:
        block_s = max(16, min(1024, next_pow2(s)))
        block_c = max(min_block_c, min(next_pow2(c), max(1, 2048 // block_s)))
    blocks_s = triton_cdiv(s, block_s)
    if interpreter:
        parts = 1
    else:
        base = n * triton_cdiv(c, block_c)
        parts = min(blocks_s, max(1, triton_cdiv(TARGET_PROGRAMS_GPU, base)))
    span = triton_cdiv(blocks_s, parts) * block_s
    if max_span is not None:
        span = max(block_s, min(span, max_span // block_s * block_s))
    return Tiling(block_c, block_s, span)
