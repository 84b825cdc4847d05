"""Strided (N, C, S) views of activations and modulation tensors, and the launch geometry of the kernels.

Every kernel addresses element (n, c, s) of a tensor as ``ptr + n * stride_n + c * stride_c + s * stride_s``, with
S the flattened spatial dimensions. That covers NCHW (``stride_s = 1``), channels_last (``stride_c = 1``) and
broadcast gamma/beta (a stride of 0 on every broadcast dimension) without copies. A tensor whose spatial dimensions
cannot be flattened into one stride (rare: a sliced view) is copied to x's memory format first.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import torch
from torch import Tensor

T = TypeVar("T")

# Programs an H100/H200 runs at once with 4 per SM: the default reduction target where the device is not known.
# Under the interpreter one program per (n, channel block) is fastest.
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


RESIDENT_MAX = 8192  # elements of a row kept in registers by one program (32 fp32 values per thread at 8 warps)
RESIDENT_MAX_TABLES = 2048  # the same with class tables, whose gathers and int64 labels need registers of their own
# Tile of the persistent row kernels: 16 KB of x forward; 8 KB backward (three streamed tensors, dy, x, gamma) and
# with class tables (int64 labels beside each tile), which keeps their pipelined loads in registers and shared memory.
PERSISTENT_TILE_BYTES = 16 << 10
PERSISTENT_TILE_BYTES_BACKWARD = 8 << 10
ROW_STRATEGIES = ("resident", "swept", "persistent")


class RowLaunch(NamedTuple):
    """Launch geometry of the row kernels: ``rows = N * grid_c`` rows (channel blocks or groups of one sample),
    ``programs`` programs looping over them.

    Attributes:
        strategy: ``"resident"`` (a row is one tile, kept in registers), ``"swept"`` (two sweeps over the row, one
            program per row) or ``"persistent"`` (two sweeps, one channel per row, long tiles, outputs stored
            evict-first, a grid sized to what the GPU holds at once).
        grid_c: rows per sample.
        channels_per_program: channels per row (a group, or the channel block).
        block_c, block_s: the tile.
        num_warps: warps per program.
        programs: the grid (at most ``N * grid_c``).
        stages: pipeline depth of the two sweeps (3 for the previous kernel's NCHW instance rows of 1 or 2 channels,
            2 for the others, whose wider tiles would spill registers at 3).
    """

    strategy: str
    grid_c: int
    channels_per_program: int
    block_c: int
    block_s: int
    num_warps: int
    programs: int
    stages: int = 2


def _cached(fn: Callable[..., T]) -> Callable[..., T]:
    """``functools.lru_cache`` for the plan functions, falling back to a plain call for unhashable arguments
    (symbolic sizes while tracing with fake tensors)."""
    cached = functools.lru_cache(maxsize=4096)(fn)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> T:
        try:
            return cached(*args, **kwargs)
        except TypeError:
            return fn(*args, **kwargs)

    return call


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


def _ncs_view(t: Tensor) -> Strides | None:
    """Strides of t's (N, C, S) view, or None when its spatial dimensions do not flatten into one stride."""
    return _ncs_of(tuple(t.shape), t.stride())  # a plain tuple: torch.Size compares through symbolic shapes


@_cached  # asked for every tensor of every launch: keep it off the host's hot path
def _ncs_of(shape: tuple[int, ...], strides: tuple[int, ...]) -> Strides | None:
    dims = [(size, stride) for size, stride in zip(shape[2:], strides[2:], strict=True) if size != 1]
    spatial = dims[-1][1] if dims else 0
    for (_, outer), (inner_size, inner) in itertools.pairwise(dims):
        if outer != inner * inner_size:
            return None
    return Strides(strides[0] if shape[0] != 1 else 0, strides[1] if shape[1] != 1 else 0, spatial)


def ncs_strides(t: Tensor) -> Strides:
    """Strides of t (rank >= 3, sizes 1 or equal to x's) as an (N, C, S) view; broadcast dimensions get 0."""
    strides = _ncs_view(t)
    if strides is None:
        raise ValueError(f"spatial dimensions of a tensor with strides {t.stride()} cannot be flattened")
    return strides


def as_flattenable(t: Tensor, like: Tensor) -> Tensor:
    """t itself when its spatial dims flatten into one stride, else a copy in ``like``'s memory format."""
    if _ncs_view(t) is not None:
        return t
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last):
        return t.contiguous(memory_format=torch.channels_last)
    if like.dim() == 5 and like.is_contiguous(memory_format=torch.channels_last_3d):
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t.contiguous()


def spatial_size(x: Tensor) -> int:
    """S, the number of positions per (n, c)."""
    return math.prod(x.shape[2:]) if x.shape[0] and x.shape[1] else 0


def choose_tiles(
    x: Tensor,
    strides: Strides,
    *,
    interpreter: bool,
    min_block_c: int = 1,
    max_span: int | None = None,
    target_programs: int = TARGET_PROGRAMS_GPU,
) -> Tiles:
    """Tiles that read memory contiguously: long along S for NCHW, wide along C for channels_last.

    The reduction kernels split S into spans so that the launch fills whole waves of ``target_programs`` (what the
    GPU runs at once) with at least 90 % of the slots busy where it can, and one span under the interpreter.
    ``min_block_c`` (16 for kernels using ``tl.dot``) and ``max_span`` constrain it.
    """
    return choose_tiles_for(x.shape[0], x.shape[1], spatial_size(x), strides, interpreter=interpreter,
                            min_block_c=min_block_c, max_span=max_span, target_programs=target_programs)  # fmt: skip


@_cached
def choose_tiles_for(
    n: int,
    c: int,
    s: int,
    strides: Strides,
    *,
    interpreter: bool,
    min_block_c: int = 1,
    max_span: int | None = None,
    target_programs: int = TARGET_PROGRAMS_GPU,
) -> Tiles:
    """:func:`choose_tiles` from the (N, C, S) sizes."""
    if strides.c == 1 and strides.s != 1:  # channels_last: C is the contiguous axis
        block_c = max(min_block_c, min(64, next_pow2(c)))
        block_s = max(16, min(next_pow2(s), 2048 // block_c))
    else:
        block_s = max(16, min(1024, next_pow2(s)))
        block_c = max(min_block_c, min(next_pow2(c), max(1, 2048 // block_s)))
    blocks_s = cdiv(s, block_s)
    parts = 1 if interpreter else _spans_for_whole_waves(n * cdiv(c, block_c), blocks_s, target_programs)
    span = cdiv(blocks_s, parts) * block_s
    if max_span is not None:
        span = max(block_s, min(span, max_span // block_s * block_s))
    return Tiles(block_c, block_s, span)


def _spans_for_whole_waves(rows: int, most: int, capacity: int) -> int:
    """Spans per row (at most ``most``) whose launch fills whole waves of ``capacity`` programs best: the fewest that
    keep 90 % of the slots busy, else the best found."""
    best, best_efficiency = 1, 0.0
    for parts in range(1, min(most, 64) + 1):
        programs = rows * parts
        efficiency = programs / (cdiv(programs, capacity) * capacity)
        if efficiency >= 0.9:
            return parts
        if efficiency > best_efficiency + 1e-9:
            best, best_efficiency = parts, efficiency
    return best


def reduction_grid(x: Tensor, tiles: Tiles, span: int) -> tuple[int, int, int]:
    """(N, channel blocks, spans of S): N on axis 0, whose limit is 2**31 - 1."""
    return (x.shape[0], cdiv(x.shape[1], tiles.block_c), cdiv(spatial_size(x), span))


def elementwise_grid(x: Tensor, tiles: Tiles) -> tuple[int]:
    """One axis enumerating (n, channel block, position block): no axis bounded by 65535 carries the batch."""
    return (x.shape[0] * cdiv(x.shape[1], tiles.block_c) * cdiv(spatial_size(x), tiles.block_s),)


@_cached
def row_launch(
    n: int,
    c: int,
    s: int,
    strides: Strides,
    element_size: int,
    groups: int,
    *,
    fill: int,
    capacity: int,
    strategy: str | None = None,
    tile_bytes: int = PERSISTENT_TILE_BYTES,
    resident_max: int = RESIDENT_MAX,
) -> RowLaunch | None:
    """Geometry of the row kernels for ``groups`` statistics per sample, or None when they do not apply.

    ``fill`` is the number of programs that keeps the device busy (twice its SMs); ``capacity`` the programs of a
    persistent launch (what the device holds at once). ``strategy`` forces one of :data:`ROW_STRATEGIES` (None
    where it does not apply: resident rows that do not fit, persistent rows in channels_last); by
    default a row that fits :data:`RESIDENT_MAX` elements (channels_last: with tiles of at least 16 channels, whole
    32-byte sectors) is ``"resident"``, a long NCHW instance row ``"persistent"``, anything else ``"swept"``.
    Resident tiles of several channels, and swept channels_last tiles, narrow until the launch has ``fill``
    programs where they can;
    persistent tiles hold ``tile_bytes`` of x; resident rows hold at most ``resident_max`` elements.
    Group statistics need groups of at most 64 channels (layer statistics are one group).
    """
    channels_last = strides.c == 1 and strides.s != 1
    if strategy is not None and strategy not in ROW_STRATEGIES:
        raise ValueError(f"row strategy must be one of {ROW_STRATEGIES}, got {strategy!r}")
    span = next_pow2(max(s, 1))
    if groups != c:  # one group per row
        per_group = c // groups
        if per_group > 64:
            return None
        block_c = next_pow2(per_group)
        resident = block_c * max(16, span) <= resident_max
        if strategy == "resident" and not resident:
            return None
        if resident and strategy in (None, "resident"):
            block_s = max(16, span)
            return RowLaunch("resident", groups, per_group, block_c, block_s, _warps(block_c * block_s), n * groups)
        block_s = max(16, min(span, max(16, 2048 // block_c)))
        return RowLaunch("swept", groups, per_group, block_c, block_s, 4, n * groups, stages=2)
    min_c = 16 if channels_last else 1
    resident = min_c * max(16, span) <= resident_max
    if strategy is None:
        strategy = "resident" if resident else ("swept" if channels_last else "persistent")
    if strategy == "resident":
        if not resident:
            return None
        block_s = max(16, span)
        block_c = _narrowed(min(64 if channels_last else 2048, next_pow2(c), resident_max // block_s), min_c, n, c,
                            fill)  # fmt: skip
        return RowLaunch("resident", cdiv(c, block_c), block_c, block_c, block_s, _warps(block_c * block_s),
                         n * cdiv(c, block_c))  # fmt: skip
    if strategy == "persistent":
        if channels_last:  # one channel per row would read 2-4 bytes per 32-byte sector
            return None
        block_s = max(16, min(span, tile_bytes // element_size))
        return RowLaunch("persistent", c, 1, 1, block_s, 8, min(n * c, capacity))
    tiles = choose_tiles_for(n, c, s, strides, interpreter=True)  # one span: the row kernel loops over S itself
    block_c, block_s = tiles.block_c, tiles.block_s
    if channels_last:
        block_c = _narrowed(block_c, 16, n, c, fill)
        block_s = max(16, min(span, 2048 // block_c))
    wide = channels_last or block_c > 2  # several channels per row: more live values per tile
    return RowLaunch("swept", cdiv(c, block_c), block_c, block_c, block_s, 8 if wide and not channels_last else 4,
                     n * cdiv(c, block_c), stages=2 if wide else 3)  # fmt: skip


def fills_device(plan: RowLaunch, n: int, fill: int) -> bool:
    """Whether the row kernels keep a GPU busy (else the split-row path spreads each row over many programs).

    Resident rows always do (their tiles narrow until they do, or the tensor is small enough to be launch-bound);
    persistent rows need one row per SM (``fill`` is two programs per SM); swept rows two.
    """
    if plan.strategy == "resident":
        return True
    return n * plan.grid_c >= (fill // 2 if plan.strategy == "persistent" else fill)


def _narrowed(block_c: int, minimum: int, n: int, c: int, fill: int) -> int:
    """Halve a channel block (not below ``minimum``) until the launch has ``fill`` programs or cannot get more."""
    block_c = max(block_c, minimum)
    while block_c > minimum and n * cdiv(c, block_c) < fill:
        block_c //= 2
    return block_c


def _warps(tile_elements: int) -> int:
    """Warps for a resident tile: at most 32 values per thread and per tensor."""
    return 4 if tile_elements <= 4096 else 8
