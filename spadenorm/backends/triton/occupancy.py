r"""How many programs of a kernel variant a GPU runs at once: the variant's registers and shared memory from a
committed compile report, the per-SM limits from the device itself.

Grids are sized from this: the reduction kernels split rows into as many spans as fill whole waves, and the
persistent row kernels launch one program per slot. Nothing is recorded at run time, so a call's grids depend only
on its shapes, strides, dtype and device: two identical calls launch identical grids, and a CUDA graph captured
after one warm-up replays what eager runs.

Variants are grouped into families, ``(kernel, element size, warps, BLOCK_C, BLOCK_S, tables, need_z)``;
:data:`FAMILIES` (:mod:`._occupancy_sm90`, written by ``benchmarks/compile_check.py --write-occupancy``) holds the
most registers and shared memory of any variant of each family compiled for sm_90, so the figure never overstates
what fits. On another GPU the same figures are set against that device's own limits
(``torch.cuda.get_device_properties``):

.. math::
    P = \min\Bigl(\Bigl\lfloor \frac{R_{SM}}{32 w \cdot 8 \lceil r / 8 \rceil}\Bigr\rfloor,
        \Bigl\lfloor \frac{M_{SM}}{m + 1\,\mathrm{KB}} \Bigr\rfloor,
        \Bigl\lfloor \frac{T_{SM}}{32 w} \Bigr\rfloor, B_{SM}\Bigr)

for ``r`` registers per thread, ``m`` bytes of shared memory per program and ``w`` warps. A family missing from the
table counts :data:`DEFAULT_PROGRAMS_PER_SM`. Under the Triton interpreter every count is
:data:`INTERPRETER_PROGRAMS`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from ._occupancy_sm90 import FAMILIES

DEFAULT_PROGRAMS_PER_SM = 2
INTERPRETER_PROGRAMS = 2  # small, so that persistent loops run several rows per program in the tests
SHARED_RESERVED_PER_BLOCK = 1024  # bytes the driver keeps per resident block (compute capability 8.0 and later)
# Resident blocks per SM by compute capability (not among the device properties torch reports).
_BLOCKS_PER_SM = {(8, 0): 32, (8, 6): 16, (8, 7): 16, (8, 9): 24, (9, 0): 32, (10, 0): 32, (10, 3): 32, (12, 0): 32}


class SMLimits(NamedTuple):
    """What one streaming multiprocessor holds at once."""

    registers: int
    shared_bytes: int
    threads: int
    blocks: int


HOPPER = SMLimits(registers=65536, shared_bytes=233472, threads=2048, blocks=32)
"""An H100/H200 (compute capability 9.0): 64K registers, 228 KB shared memory, 64 warps, 32 blocks."""


class Device(NamedTuple):
    """The GPU a plan is made for: its SM count and per-SM limits (``sms`` 0 under the interpreter)."""

    sms: int
    limits: SMLimits


INTERPRETER = Device(0, HOPPER)


def programs_per_sm(registers: int, shared_bytes: int, num_warps: int, limits: SMLimits = HOPPER) -> int:
    """Resident programs per SM for a kernel using ``registers`` per thread and ``shared_bytes`` per program.

    Registers are allocated per warp in units of 256 (8 per thread, rounded up).

    >>> programs_per_sm(registers=56, shared_bytes=48 * 1024, num_warps=4)  # shared memory bound
    4
    >>> programs_per_sm(registers=128, shared_bytes=0, num_warps=8)  # register bound
    2
    """
    per_warp = -(-max(registers, 1) * 32 // 256) * 256
    by_registers = limits.registers // (per_warp * num_warps)
    by_shared = limits.shared_bytes // (shared_bytes + SHARED_RESERVED_PER_BLOCK) if shared_bytes else limits.blocks
    return max(1, min(by_registers, by_shared, limits.threads // (32 * num_warps), limits.blocks))


@functools.cache
def cuda_device(index: int) -> Device:
    """SM count and per-SM limits of CUDA device ``index`` (cached), Hopper's where torch does not report one."""
    props = torch.cuda.get_device_properties(index)
    limits = SMLimits(
        registers=getattr(props, "regs_per_multiprocessor", HOPPER.registers),
        shared_bytes=getattr(props, "shared_memory_per_multiprocessor", HOPPER.shared_bytes),
        threads=getattr(props, "max_threads_per_multi_processor", HOPPER.threads),
        blocks=_BLOCKS_PER_SM.get((props.major, props.minor), 16),
    )
    return Device(props.multi_processor_count, limits)


Family = tuple[str, int, int, int, int, bool, bool]


def family(kernel: str, element_size: int, num_warps: int, block_c: int, block_s: int, tables: bool = False,
           need_z: bool = False) -> Family:  # fmt: skip
    """The key of a variant family in :data:`FAMILIES`: kernel, element size of x, warps, tile, whether class tables
    are gathered and whether the backward reads beta for the scale's gradient (both need registers of their own)."""
    return kernel, element_size, num_warps, block_c, block_s, tables, need_z


def resident_programs(key: Family, device: Device) -> int:
    """Programs of a variant family that ``device`` runs at once (:data:`INTERPRETER_PROGRAMS` under the
    interpreter)."""
    if device.sms == 0:
        return INTERPRETER_PROGRAMS
    figures = FAMILIES.get(key)
    if figures is None:
        return device.sms * DEFAULT_PROGRAMS_PER_SM
    registers, shared_bytes = figures
    return device.sms * programs_per_sm(registers, shared_bytes, key[2], device.limits)
