"""How many programs of a kernel a GPU runs at once, from the compiled kernel's registers and shared memory.

Grids are sized from this: the reduction kernels split rows into as many spans as fill one wave (no tail), and the
persistent row kernel launches exactly one program per slot. The first launch of a kernel variant runs on an
estimate (:data:`DEFAULT_PROGRAMS_PER_SM`); its compiled resources are recorded and later launches use them. Under
the Triton interpreter nothing is compiled and every count is :data:`INTERPRETER_PROGRAMS`.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

# Per-SM limits of an H100/H200 (compute capability 9.0: 64K registers, 228 KB shared memory of which 1 KB is
# reserved per block, 64 resident warps, 32 resident blocks). GPUs with smaller limits hold fewer programs than this
# counts, so their grids run a few more waves than planned: slower, never wrong.
REGISTERS_PER_SM = 65536
SHARED_BYTES_PER_SM = 228 * 1024
SHARED_RESERVED_PER_BLOCK = 1024
WARPS_PER_SM = 64
BLOCKS_PER_SM = 32
DEFAULT_PROGRAMS_PER_SM = 2
INTERPRETER_PROGRAMS = 2  # small, so that persistent loops run several rows per program in the tests

_RECORDED: dict[tuple[str, Any], int] = {}


def programs_per_sm(registers: int, shared_bytes: int, num_warps: int) -> int:
    """Resident programs per SM for a kernel using ``registers`` per thread and ``shared_bytes`` per program.

    Registers are allocated per warp in units of 256 (8 per thread, rounded up).

    >>> programs_per_sm(registers=56, shared_bytes=48 * 1024, num_warps=4)  # shared memory bound
    4
    >>> programs_per_sm(registers=128, shared_bytes=0, num_warps=8)  # register bound
    2
    """
    per_warp = -(-max(registers, 1) * 32 // 256) * 256
    by_registers = REGISTERS_PER_SM // (per_warp * num_warps)
    by_shared = SHARED_BYTES_PER_SM // (shared_bytes + SHARED_RESERVED_PER_BLOCK) if shared_bytes else BLOCKS_PER_SM
    return max(1, min(by_registers, by_shared, WARPS_PER_SM // num_warps, BLOCKS_PER_SM))


@functools.cache
def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (cached)."""
    return torch.cuda.get_device_properties(device).multi_processor_count


def record(kernel: str, variant: Any, compiled: Any) -> None:
    """Remember the occupancy of a launched variant (``compiled``: what a Triton launch returns, or None)."""
    registers = getattr(compiled, "n_regs", None)
    metadata = getattr(compiled, "metadata", None)
    if registers is None or metadata is None:
        return
    _RECORDED[(kernel, variant)] = programs_per_sm(registers, metadata.shared, metadata.num_warps)


def resident_programs(kernel: str, variant: Any, device: torch.device) -> int:
    """Programs of a kernel variant that ``device`` runs at once (an estimate until the variant has run once)."""
    if device.type != "cuda":
        return INTERPRETER_PROGRAMS
    return sm_count(device) * _RECORDED.get((kernel, variant), DEFAULT_PROGRAMS_PER_SM)
