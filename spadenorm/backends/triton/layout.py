"""Strided (N, C, S) views of activations and modulation tensors.

Every kernel addresses element (n, c, s) of a tensor as ``ptr + n * stride_n + c * stride_c + s * stride_s``, with
S the flattened spatial dimensions. That covers NCHW (``stride_s = 1``), channels_last (``stride_c = 1``) and
broadcast gamma/beta (a stride of 0 on every broadcast dimension) without copies. A tensor whose spatial dimensions
cannot be flattened into one stride (rare: a sliced view) is copied to x's memory format first.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import torch
from torch import Tensor


class Strides(NamedTuple):
    """Strides of the (N, C, S) view of a tensor; 0 on broadcast dimensions."""

    n: int
    c: int
    s: int


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


def spatial_size(x: Tensor) -> int:
    """S, the number of positions per (n, c)."""
    return math.prod(x.shape[2:]) if x.shape[0] and x.shape[1] else 0


def ncs_view(t: Tensor) -> Strides | None:
    """Strides of t's (N, C, S) view, or None when its spatial dimensions do not flatten into one stride."""
    if torch.compiler.is_compiling():  # traced once: no cache (and symbolic sizes are not hashable)
        return _ncs_of.__wrapped__(tuple(t.shape), t.stride())
    try:
        return _ncs_of(tuple(t.shape), t.stride())  # a plain tuple: torch.Size compares through symbolic shapes
    except TypeError:  # symbolic sizes while tracing: not hashable
        return _ncs_of.__wrapped__(tuple(t.shape), t.stride())


@functools.lru_cache(maxsize=4096)
def _ncs_of(shape: tuple[int, ...], strides: tuple[int, ...]) -> Strides | None:
    dims = [(size, stride) for size, stride in zip(shape[2:], strides[2:], strict=True) if size != 1]
    spatial = dims[-1][1] if dims else 0
    for (_, outer), (inner_size, inner) in itertools.pairwise(dims):
        if outer != inner * inner_size:
            return None
    return Strides(strides[0] if shape[0] != 1 else 0, strides[1] if shape[1] != 1 else 0, spatial)


def ncs_strides(t: Tensor) -> Strides:
    """Strides of t (rank >= 3, sizes 1 or equal to x's) as an (N, C, S) view; broadcast dimensions get 0."""
    strides = ncs_view(t)
    if strides is None:
        raise ValueError(f"spatial dimensions of a tensor with strides {t.stride()} cannot be flattened")
    return strides


def as_flattenable(t: Tensor, like: Tensor) -> Tensor:
    """t itself when its spatial dims flatten into one stride, else a copy in ``like``'s memory format."""
    if ncs_view(t) is not None:
        return t
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last):
        return t.contiguous(memory_format=torch.channels_last)
    if like.dim() == 5 and like.is_contiguous(memory_format=torch.channels_last_3d):
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t.contiguous()


def output_like(x: Tensor, dtype: torch.dtype) -> Tensor:
    """An uninitialised tensor of x's shape and (flattenable) layout: the outputs of every kernel, and their fakes."""
    return torch.empty_like(as_flattenable(x, x), dtype=dtype)


def flat_labels(labels: Tensor) -> Tensor:
    """A label map (N, *spatial) as the (N, S) tensor the kernels read: a view where the spatial dimensions merge
    into one stride, else a copy (a transposed map, one sliced with a step or cut from a wider buffer)."""
    return labels.flatten(1)


def per_sample_strides(t: Tensor) -> tuple[int, int]:
    """(row, column) strides of an (N, C) or (1, C) tensor (scale, shift): row stride 0 when shared by the batch."""
    return 0 if t.shape[0] == 1 else t.stride(0), t.stride(1)
