"""Compile, on the host's cores and before anything is timed, every kernel variant the GPU suite will launch.

A fresh GPU machine has cold compile caches: each Triton variant costs about a second on first launch (compilation,
``ptxas``, and with Triton 3.6 a C launcher built with the host compiler), each ``torch.compile`` graph ten seconds
or more, and the timed steps would spend their budget compiling one variant after another. This step does that work
first, in parallel, and leaves it in the on-disk caches the timed steps read:

* Triton: the suite's cases (and the CUDA-marked tests' shapes) are grouped by what decides their variants, and a
  pool of processes (one per host core) runs each group's calls of the public API on empty CPU tensors of the real
  shapes, planned for this GPU, with every launch replaced by Triton's ``warmup`` (:mod:`benchmarks.variants`): the
  same variants, specialized from the same arguments, land in Triton's cache; each is then loaded on the GPU once,
  which builds its launcher. Nothing runs on the GPU.
* Inductor: the compiled baselines run once on the GPU (forward and backward) in a few processes, which fills
  Inductor's caches.

The same grouping counts the variants for the suite's cost model (:func:`variants_of`, no compilation).

Usage: ``python -m benchmarks.gpu_precompile [--workers N] [--inductor-workers M]`` on the GPU machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

import torch

from spadenorm.backends.triton.occupancy import HOPPER, Device

from . import test_gpu_kernels as suite
from .gpu_timing import LABEL_MAPS

# The CUDA-marked tests of tests/test_triton.py: every statistics kind, spatial gamma and beta, fp32/fp16/bf16.
CUDA_TEST_SHAPES = [(2, 3, 1000, 1001), (8, 1024, 16, 16), (8, 256, 128, 128), (4, 128, 256, 512)]
CUDA_TEST_NORMS = ["instance", "batch", "sync_batch", "group", "layer", "none"]
H100 = Device(132, HOPPER)

Group = tuple[str, tuple[int, ...], str, str | None, str, bool, bool]  # kind, shape, dtype, labels, path, 2nd, backward


def group_of(case: suite.Case) -> Group:
    """What decides a case's Triton variants (the pass only by whether it runs the backward)."""
    return (case.kind, case.shape, case.dtype, case.labels, case.path, case.second, case.mode != "forward")


def groups(cases: Iterable[suite.Case]) -> list[Group]:
    """The distinct groups of the spadenorm cases among ``cases``, in order."""
    seen: dict[Group, None] = {}
    for case in cases:
        if case.impl in ("spadenorm", "clade"):
            seen.setdefault(group_of(case), None)
    return list(seen)


def cuda_test_groups() -> list[Group]:
    return [(norm, shape, dtype, None, "rule", False, True) for shape in CUDA_TEST_SHAPES
            for norm in CUDA_TEST_NORMS for dtype in suite.DTYPES]  # fmt: skip


def run_group(group: Group) -> None:
    """The group's calls of the public API on empty CPU tensors: a forward, and its backward where the cases run one.
    Call inside :func:`benchmarks.variants.compiling` or :func:`benchmarks.variants.recording`."""
    kind, shape, dtype_name, labels, path, second, backward = group
    dtype = suite.DTYPES[dtype_name]
    x = torch.empty(shape, dtype=dtype, requires_grad=True)
    with suite.forced_path(suite.PATHS[path]):
        if labels is not None:
            n, c, h, w = shape
            classes = LABEL_MAPS[labels][1]
            tables = [torch.empty((classes, c), dtype=dtype, requires_grad=True) for _ in range(2)]
            params: list[torch.Tensor] = [x, *tables]
            y = suite.fused_clade(x, torch.zeros((n, h, w), dtype=torch.long), *tables)
        else:
            params = [x] + [torch.empty(shape, dtype=dtype, requires_grad=True) for _ in range(2)]
            if second:
                params += [torch.empty(shape[:2], dtype=dtype, requires_grad=True) for _ in range(2)]
            y = suite.fused(_statistics(kind, shape))(*params)
        if backward:
            torch.autograd.grad(y, params, torch.empty_like(y))


def _statistics(kind: str, shape: tuple[int, ...]) -> str:
    """The cuda tests' group statistics on an odd channel count use one group (layer statistics)."""
    return "layer" if kind == "group" and shape[1] % suite.GROUPS else kind


def variants_of(cases: Iterable[suite.Case], device: Device = H100) -> set[tuple[Any, ...]]:
    """The distinct Triton variants the spadenorm cases among ``cases`` compile (recorded, not compiled)."""
    from .variants import recording

    seen: set[tuple[Any, ...]] = set()
    with recording(device, seen):
        for group in groups(cases):
            run_group(group)
    return seen


def _compile_groups(chunk: list[Group]) -> tuple[int, list[str]]:
    """Worker: compile the variants of ``chunk`` for GPU 0 and load each once (which builds its launcher)."""
    from spadenorm.backends.triton.occupancy import cuda_device

    from .variants import compiling

    compiled: dict[str, Any] = {}
    failures: list[str] = []

    def load(name: str, constexprs: dict[str, Any], kernel: Any) -> None:
        if kernel.hash not in compiled:
            compiled[kernel.hash] = kernel
            try:
                kernel._init_handles()  # the module on the GPU, and its launcher (built with the host compiler on 3.6)
            except Exception as error:  # reported; the timed step that launches it reports it again
                failures.append(f"{name} {constexprs}: loading: {type(error).__name__}: {error}")

    with compiling(cuda_device(0), load, failures):
        for group in chunk:
            run_group(group)
    return len(compiled), failures


def _warm_inductor(case: suite.Case) -> str:
    """Worker: the compiled baseline of ``case``, forward and backward once on the GPU (fills Inductor's caches)."""
    inputs = suite.make_inputs(case)
    y = suite.implementation(case)(*inputs.args())
    torch.autograd.grad(y, inputs.params[:2], inputs.dy)
    torch.cuda.synchronize()
    return case.row


def _report_inductor(future: concurrent.futures.Future[str], start: float) -> None:
    try:
        print(f"Inductor: {future.result()} compiled ({time.perf_counter() - start:.0f} s)", flush=True)
    except Exception as error:  # a baseline that does not compile is reported by its own step
        print(f"Inductor: a baseline failed to compile: {type(error).__name__}: {error}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes compiling Triton variants")
    parser.add_argument("--inductor-workers", type=int, default=4, help="processes compiling torch.compile graphs")
    args = parser.parse_args()
    start = time.perf_counter()
    cases = [case for step in suite.STEPS.values() for case in step if isinstance(case, suite.Case)]
    odd = [g for g in cuda_test_groups() if g[1] == CUDA_TEST_SHAPES[0]]  # the masking test runs first: so does this
    todo = list(dict.fromkeys(odd + groups(cases) + cuda_test_groups()))
    chunks = [todo[i :: args.workers] for i in range(args.workers)]
    spawn = multiprocessing.get_context("spawn")  # fresh processes: CUDA is initialized in each worker
    graphs = list({(c.kind, c.shape, c.dtype): c for c in cases if c.impl == "compiled"}.values())
    variants, failures = 0, []
    with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=spawn) as triton_pool, (
        concurrent.futures.ProcessPoolExecutor(args.inductor_workers, mp_context=spawn)
    ) as inductor_pool:  # fmt: skip
        warming = [inductor_pool.submit(_warm_inductor, case) for case in graphs]
        for count, failed in triton_pool.map(_compile_groups, [c for c in chunks if c]):
            variants += count
            failures += failed
        print(f"Triton: {len(todo)} call groups, {variants} variants compiled and loaded in "
              f"{time.perf_counter() - start:.0f} s on {args.workers} processes", flush=True)  # fmt: skip
        for future in concurrent.futures.as_completed(warming):
            _report_inductor(future, start)
    for failure in failures:
        print("FAILED", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
