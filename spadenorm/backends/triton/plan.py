"""The launch plan of a call: which strategy computes the statistics and the output, and the geometry of every
launch (grid, tile, warps, spans), decided once per call and handed to the ops.

A plan is a pure function of x's (N, C, S) sizes and strides, its element size, the statistics (per-sample groups,
batch, or given), whether class tables are gathered, whether the scale needs a gradient, and the device (its SMs and
per-SM limits, :mod:`.occupancy`); it is cached per signature. Nothing recorded by earlier launches enters it.

The rule, forward:

* statistics that do not depend on x (eval-mode batch norms, ``"none"``): ``GIVEN``, the modulate kernel alone;
* batch statistics: ``SPLIT``: partial moments over spans of S, merged per channel, then the modulate kernel;
* per-sample statistics (instance, group, layer): the row kernels where a row fits the rule below and the launch
  fills the device (always under the interpreter), else ``SPLIT``. A row (one group, or a block of channels for
  instance statistics; groups of at most 64 channels) is ``RESIDENT`` when it fits one tile (:data:`RESIDENT_MAX`
  elements forward, :data:`RESIDENT_MAX_BACKWARD` backward, :data:`RESIDENT_MAX_TABLES` with class tables;
  channels_last tiles of at least 16 channels), ``PERSISTENT`` for longer NCHW instance rows (one channel per row,
  :data:`PERSISTENT_TILE_BYTES` tiles, one program per slot of the device), ``SWEPT`` for longer group or
  channels_last rows. Resident and swept launches fill the device with two programs per SM; persistent ones with one
  row per SM.

The backward has a plan of its own by the same rule, with its own tile limits (its kernels hold dy, x and gamma).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..._backend import triton_interpreter
from ..._core import NormSpec
from .kernels.common import Strategy
from .layout import Strides, as_flattenable, cdiv, ncs_strides, next_pow2, spatial_size
from .occupancy import INTERPRETER, Device, cuda_device, family, resident_programs

RESIDENT_MAX = 8192  # elements of a forward row kept in registers (32 fp32 values per thread at 8 warps)
RESIDENT_MAX_BACKWARD = 4096  # backward rows hold dy, x and gamma: 16 values of each per thread at 8 warps
RESIDENT_MAX_TABLES = 2048  # with class tables, whose gathers and int64 labels need registers of their own
PERSISTENT_TILE_BYTES = 16 << 10  # of x per tile of a persistent forward row
PERSISTENT_TILE_BYTES_BACKWARD = 8 << 10  # backward and with tables: dy, x, gamma (or labels) streamed side by side
ROW_STRATEGIES = {"resident": Strategy.RESIDENT, "swept": Strategy.SWEPT, "persistent": Strategy.PERSISTENT}


class Launch(NamedTuple):
    """The geometry of one kernel launch, as the ops receive it (``list(launch)``).

    Attributes:
        grid0, grid1, grid2: the grid.
        block_c, block_s: the [BLOCK_C, BLOCK_S] tile.
        num_warps: warps per program.
        span: positions of S per program of a reduction kernel (0 elsewhere).
        row_channels: channels per row of a row kernel (0 elsewhere).
        strategy: the :class:`~.kernels.common.Strategy` of a row kernel.
        block_m: partials pooled per step (finalize and dx kernels; 0 elsewhere).
        per_channel: 1 where each channel of a row is its own set (instance statistics), 0 for one group per row.
    """

    grid0: int
    grid1: int = 1
    grid2: int = 1
    block_c: int = 1
    block_s: int = 16
    num_warps: int = 4
    span: int = 0
    row_channels: int = 0
    strategy: int = 0
    block_m: int = 0
    per_channel: int = 0

    @property
    def grid(self) -> tuple[int, int, int]:
        return self.grid0, self.grid1, self.grid2


class CallPlan(NamedTuple):
    """Every launch of one call, forward and backward.

    Attributes:
        strategy: the forward's :class:`~.kernels.common.Strategy`.
        forward: its launches: ``(row,)`` for the row kernels; ``(partial, finalize, modulate)`` for ``SPLIT``;
            ``(modulate,)`` for ``GIVEN``.
        backward_strategy: the backward's: a row strategy, ``SPLIT`` (sums and dx kernels, pooling the
            coefficients) or ``GIVEN`` (no coefficients).
        backward: ``(row,)``, or ``(sums, dx)`` for ``SPLIT`` and ``GIVEN`` (each launched where needed).
        table_grad: the class-table gradient launch (with class tables), else None.
    """

    strategy: Strategy
    forward: tuple[Launch, ...]
    backward_strategy: Strategy
    backward: tuple[Launch, ...]
    table_grad: Launch | None


@dataclasses.dataclass(frozen=True)
class LaunchOverrides:
    """Overrides of the rule for tests; ``None`` leaves the choice to the rule.

    Attributes:
        row_kernels: per-sample statistics on the row kernels (where a row strategy applies) or on ``SPLIT``.
        row_strategy: ``"resident"``, ``"swept"`` or ``"persistent"`` (where it applies: resident rows that fit a
            tile, swept rows of groups or in channels_last, persistent NCHW instance rows).
        max_span: cap on the positions of S per program of the reduction kernels (several spans per row).
    """

    row_kernels: bool | None = None
    row_strategy: str | None = None
    max_span: int | None = None


OVERRIDES = LaunchOverrides()
_generation = 0  # bumped by every change of OVERRIDES: part of the plan cache's key


@contextlib.contextmanager
def overridden(**fields: Any) -> Iterator[LaunchOverrides]:
    """Override fields of the rule for the duration of a block (forward and backward inside it)."""
    global OVERRIDES, _generation
    if unknown := set(fields) - {f.name for f in dataclasses.fields(LaunchOverrides)}:
        raise TypeError(f"LaunchOverrides has no field {sorted(unknown)[0]!r}; fields: {sorted(OVERRIDES.__dict__)}")
    if fields.get("row_strategy") not in (None, *ROW_STRATEGIES):
        raise ValueError(f"row strategy must be one of {tuple(ROW_STRATEGIES)}, got {fields['row_strategy']!r}")
    saved = OVERRIDES
    OVERRIDES, _generation = dataclasses.replace(OVERRIDES, **fields), _generation + 1
    try:
        yield OVERRIDES
    finally:
        OVERRIDES, _generation = saved, _generation + 1


def generation() -> int:
    """A number that changes with every change of the overrides: part of every cache key of a decided launch."""
    return _generation


class Signature(NamedTuple):
    """What a plan depends on: x's (N, C, S) sizes, strides and element size, the statistics, the options."""

    n: int
    c: int
    s: int
    strides: Strides
    element_size: int
    groups: int | None  # per-sample sets per sample (instance: C, group: G, layer: 1), None for batch sets
    from_input: bool  # statistics of x (else running estimates or the identity)
    tables: bool  # class tables gathered by a label map
    need_z: bool  # the scale needs a gradient (the backward sums dy * z)


_PLANS: dict[tuple[Any, ...], CallPlan] = {}


def plan_for(x: Tensor, spec: NormSpec, training: bool, tables: bool, need_z: bool) -> CallPlan:
    """The plan of a call on x with ``spec``'s statistics, cached per signature (x's shape, strides, dtype and
    device, the statistics, the options and the overrides); computed afresh while tracing."""
    from_input = spec.uses_batch_statistics(training)
    groups = spec.groups_per_sample(x.shape[1]) if from_input and not spec.is_batch else None
    if torch.compiler.is_compiling():
        return make_plan(_signature(x, groups, from_input, tables, need_z), _device(x), OVERRIDES)
    key = (x.shape, x.stride(), x.dtype, x.device, groups, from_input, tables, need_z, _generation)
    try:
        plan = _PLANS.get(key)
    except TypeError:  # symbolic sizes while tracing: not hashable
        return make_plan(_signature(x, groups, from_input, tables, need_z), _device(x), OVERRIDES)
    if plan is None:
        if len(_PLANS) > 4096:
            _PLANS.clear()
        plan = _PLANS[key] = make_plan(_signature(x, groups, from_input, tables, need_z), _device(x), OVERRIDES)
    return plan


def _signature(x: Tensor, groups: int | None, from_input: bool, tables: bool, need_z: bool) -> Signature:
    strides = ncs_strides(as_flattenable(x, x))
    n, c, s = int(x.shape[0]), int(x.shape[1]), int(spatial_size(x))
    return Signature(n, c, s, Strides(*map(int, strides)), x.element_size(), groups, from_input, tables, need_z)


def _device(x: Tensor) -> Device:
    if x.device.type != "cuda" or triton_interpreter():
        return INTERPRETER
    return cuda_device(x.device.index if x.device.index is not None else torch.cuda.current_device())


def make_plan(sig: Signature, device: Device, overrides: LaunchOverrides = LaunchOverrides()) -> CallPlan:
    """The rule (see the module docstring) for one signature on ``device`` (:data:`~.occupancy.INTERPRETER`: the
    Triton interpreter)."""
    sums = _sums_launch(sig, device, overrides)
    dx = _dx_launch(sig, sums)
    table_grad = _table_grad_launch(sig, device, overrides) if sig.tables else None
    if not sig.from_input:
        return CallPlan(Strategy.GIVEN, (_modulate_launch(sig),), Strategy.GIVEN, (sums, dx), table_grad)
    split = _split_forward(sig, device, overrides)
    if sig.groups is None:
        return CallPlan(Strategy.SPLIT, split, Strategy.SPLIT, (sums, dx), table_grad)
    forward = _rows(sig, device, overrides, backward=False)
    if forward is None:
        return CallPlan(Strategy.SPLIT, split, Strategy.SPLIT, (sums, dx), table_grad)
    backward = _rows(sig, device, overrides, backward=True)
    back: tuple[Strategy, tuple[Launch, ...]] = (
        (Strategy(backward.strategy), (backward,)) if backward is not None else (Strategy.SPLIT, (sums, dx))
    )
    return CallPlan(Strategy(forward.strategy), (forward,), *back, table_grad)


def _rows(sig: Signature, device: Device, overrides: LaunchOverrides, backward: bool) -> Launch | None:
    """The row kernels' launch, or None where they do not apply or (on a GPU, by the rule) do not fill it."""
    assert sig.groups is not None
    forced = None if overrides.row_strategy is None else ROW_STRATEGIES[overrides.row_strategy]
    launch = row_launch(sig, device, backward, forced)
    if launch is None or overrides.row_kernels is False:
        return None
    if overrides.row_kernels or device.sms == 0:
        return launch
    return launch if fills_device(launch, sig.n * cdiv(sig.c, launch.row_channels), device.sms) else None


def row_launch(sig: Signature, device: Device, backward: bool, forced: Strategy | None = None) -> Launch | None:
    """Geometry of the row kernels for ``sig.groups`` sets per sample, or None where no row strategy (or not the
    ``forced`` one) applies. Resident tiles of several channels, and swept channels_last tiles, narrow until the
    launch has two programs per SM where they can."""
    assert sig.groups is not None
    n, c, s, groups = sig.n, sig.c, sig.s, sig.groups
    channels_last = sig.strides.c == 1 and sig.strides.s != 1
    most = RESIDENT_MAX_TABLES if sig.tables else (RESIDENT_MAX_BACKWARD if backward else RESIDENT_MAX)
    fill = 2 * device.sms if device.sms else 1
    span = max(16, next_pow2(s))
    if groups != c:  # one group per row
        per_group = c // groups
        if per_group > 64:
            return None
        block_c = next_pow2(per_group)
        if block_c * span <= most and forced in (None, Strategy.RESIDENT):
            return Launch(n * groups, block_c=block_c, block_s=span, num_warps=_warps(block_c * span, backward),
                          row_channels=per_group, strategy=int(Strategy.RESIDENT))  # fmt: skip
        if forced not in (None, Strategy.SWEPT):
            return None
        block_s = min(span, max(16, 2048 // block_c))
        return Launch(
            n * groups, block_c=block_c, block_s=block_s, row_channels=per_group, strategy=int(Strategy.SWEPT)
        )
    min_c = 16 if channels_last else 1
    resident = min_c * span <= most
    strategy = forced or (Strategy.RESIDENT if resident else Strategy.SWEPT if channels_last else Strategy.PERSISTENT)
    if strategy == Strategy.RESIDENT:
        if not resident:
            return None
        block_c = _narrowed(min(64 if channels_last else 2048, next_pow2(c), most // span), min_c, n, c, fill)
        return Launch(n * cdiv(c, block_c), block_c=block_c, block_s=span, num_warps=_warps(block_c * span, backward),
                      row_channels=block_c, strategy=int(Strategy.RESIDENT), per_channel=1)  # fmt: skip
    if strategy == Strategy.PERSISTENT:
        if channels_last:  # one channel per row would read 2-4 bytes per 32-byte sector
            return None
        tile = PERSISTENT_TILE_BYTES_BACKWARD if backward or sig.tables else PERSISTENT_TILE_BYTES
        block_s = min(span, tile // sig.element_size)
        kernel = "_row_bwd_kernel" if backward else "_row_fwd_kernel"
        slots = resident_programs(family(kernel, sig.element_size, 8, 1, block_s, sig.tables, backward and sig.need_z),
                                  device)  # fmt: skip
        return Launch(
            min(n * c, slots),
            block_s=block_s,
            num_warps=8,
            row_channels=1,
            strategy=int(Strategy.PERSISTENT),
            per_channel=1,
        )
    if not channels_last:  # NCHW instance rows longer than a tile are persistent, never swept
        return None
    block_c = _narrowed(min(64, next_pow2(c)), 16, n, c, fill)
    block_s = min(span, 2048 // block_c)
    return Launch(n * cdiv(c, block_c), block_c=block_c, block_s=block_s, row_channels=block_c,
                  strategy=int(Strategy.SWEPT), per_channel=1)  # fmt: skip


def fills_device(launch: Launch, rows: int, sms: int) -> bool:
    """Whether ``rows`` rows on the row kernels keep a GPU of ``sms`` SMs busy (else ``SPLIT`` spreads each row over
    many programs): resident rows always do (their tiles narrow until they do, or the tensor is small enough to be
    launch-bound); persistent rows need one row per SM, swept rows two."""
    if launch.strategy == Strategy.RESIDENT:
        return True
    return rows >= (sms if launch.strategy == Strategy.PERSISTENT else 2 * sms)


def _narrowed(block_c: int, minimum: int, n: int, c: int, fill: int) -> int:
    """Halve a channel block (not below ``minimum``) until the launch has ``fill`` programs or cannot get more."""
    block_c = max(block_c, minimum)
    while block_c > minimum and n * cdiv(c, block_c) < fill:
        block_c //= 2
    return block_c


def _warps(tile_elements: int, backward: bool) -> int:
    """Warps for a resident tile: forward 4 up to 4096 elements, else 8 (at most 32 values per thread and tensor);
    backward 4 up to 2048, else 8 (at most 16 values of each of dy, x and gamma per thread)."""
    return 4 if tile_elements <= (2048 if backward else 4096) else 8


def reduction_tiles(sig: Signature, min_block_c: int = 1) -> tuple[int, int]:
    """(block_c, block_s) of the reduction and elementwise kernels: long along S for NCHW, wide along C for
    channels_last, at most 2048 elements."""
    if sig.strides.c == 1 and sig.strides.s != 1:  # channels_last: C is the contiguous axis
        block_c = max(min_block_c, min(64, next_pow2(sig.c)))
        return block_c, max(16, min(next_pow2(sig.s), 2048 // block_c))
    block_s = max(16, min(1024, next_pow2(sig.s)))
    return max(min_block_c, min(next_pow2(sig.c), max(1, 2048 // block_s))), block_s


def reduction_span(sig: Signature, block_c: int, block_s: int, capacity: int, max_span: int | None) -> int:
    """Positions of S per program of a reduction kernel: the fewest spans whose launch fills whole waves of
    ``capacity`` programs with at least 90 % of the slots busy (else the best found), one span under the
    interpreter (``capacity`` 0); at most ``max_span``, a multiple of ``block_s``."""
    blocks_s = cdiv(sig.s, block_s)
    tiles = blocks_s if capacity == 0 else _tiles_per_span(sig.n * cdiv(sig.c, block_c), blocks_s, capacity)
    span = tiles * block_s
    if max_span is not None:
        span = max(block_s, min(span, max_span // block_s * block_s))
    return span


def _tiles_per_span(rows: int, blocks_s: int, capacity: int) -> int:
    """Tiles per span for ``rows`` rows of ``blocks_s`` tiles: the longest spans (fewest programs, at most 64 per
    row) whose launch keeps 90 % of whole waves of ``capacity`` programs busy, else the best found."""
    best, best_efficiency = blocks_s, 0.0
    for tiles in range(blocks_s, 0, -1):
        parts = cdiv(blocks_s, tiles)
        if parts > 64:
            break
        programs = rows * parts
        efficiency = programs / (cdiv(programs, capacity) * capacity)
        if efficiency >= 0.9:
            return tiles
        if efficiency > best_efficiency + 1e-9:
            best, best_efficiency = tiles, efficiency
    return best


def _reduction(sig: Signature, device: Device, overrides: LaunchOverrides, kernel: str, num_warps: int,
               min_block_c: int = 1) -> Launch:  # fmt: skip
    block_c, block_s = reduction_tiles(sig, min_block_c)
    if kernel == "_class_table_grad_kernel":  # a table tile and its one-hot [BLOCK_S, 16] operand in registers
        block_c = min(block_c, 64)
        block_s = max(16, min(block_s, 2048 // block_c))
    if kernel == "_backward_sums_kernel" and block_c >= 16 and block_s >= 128:
        num_warps = 8  # [16, 128] NCHW tiles of three streamed tensors spill at 4 warps (Triton 3.6)
    tables = sig.tables and kernel != "_stats_partial_kernel"
    need_z = sig.need_z and kernel == "_backward_sums_kernel"
    capacity = 0 if device.sms == 0 else resident_programs(
        family(kernel, sig.element_size, num_warps, block_c, block_s, tables, need_z), device)  # fmt: skip
    span = reduction_span(sig, block_c, block_s, capacity, overrides.max_span)
    return Launch(sig.n, cdiv(sig.c, block_c), cdiv(sig.s, span), block_c, block_s, num_warps, span)


def _modulate_launch(sig: Signature) -> Launch:
    block_c, block_s = reduction_tiles(sig)
    return Launch(sig.n * cdiv(sig.c, block_c) * cdiv(sig.s, block_s), block_c=block_c, block_s=block_s)


def _split_forward(sig: Signature, device: Device, overrides: LaunchOverrides) -> tuple[Launch, Launch, Launch]:
    partial = _reduction(sig, device, overrides, "_stats_partial_kernel", 4)
    rows = sig.n if sig.groups is not None else 1
    block_c = min(64, next_pow2(sig.c))
    group_size = sig.c // sig.groups if sig.groups is not None else 1
    members = (group_size if sig.groups is not None else sig.n) * partial.grid2
    finalize = Launch(
        rows,
        cdiv(sig.c, block_c),
        block_c=block_c,
        span=partial.span,
        row_channels=group_size,
        block_m=pooling_block(members, block_c),
    )
    return partial, finalize, _modulate_launch(sig)


def _sums_launch(sig: Signature, device: Device, overrides: LaunchOverrides) -> Launch:
    return _reduction(sig, device, overrides, "_backward_sums_kernel", 8 if sig.need_z else 4)


def _dx_launch(sig: Signature, sums: Launch) -> Launch:
    """The dx kernel; ``row_channels`` is the number of channels of a sample's set (1 for batch sets)."""
    group_size = 1 if sig.groups is None else sig.c // sig.groups
    block_c, block_s = reduction_tiles(sig)
    block_m = pooling_block((sig.n if sig.groups is None else group_size) * sums.grid2, block_c)
    grid = sig.n * cdiv(sig.c, block_c) * cdiv(sig.s, block_s)
    return Launch(grid, block_c=block_c, block_s=block_s, row_channels=group_size, block_m=block_m)


def _table_grad_launch(sig: Signature, device: Device, overrides: LaunchOverrides) -> Launch:
    return _reduction(sig, device, overrides, "_class_table_grad_kernel", 8, min_block_c=16)


def pooling_block(members: int, block_c: int) -> int:
    """Partials pooled per step by a program of ``block_c`` channels: at most 512 values (4 per thread at 4 warps)."""
    return max(2, min(next_pow2(members), 512 // block_c))
