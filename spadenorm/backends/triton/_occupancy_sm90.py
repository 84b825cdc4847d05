"""Registers per thread and shared memory per program of each kernel variant family compiled for sm_90.

Written by ``python benchmarks/compile_check.py --write-occupancy``: for each family (kernel, element size, warps,
tile elements) the most registers and shared memory among the variants compiled at the checked shapes. Read by
:mod:`.occupancy`.
"""

FAMILIES: dict[tuple[str, int, int, int], tuple[int, int]] = {}
