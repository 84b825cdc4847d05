"""Host time per call of the Triton backend, with only the device work stubbed: what the host adds to each layer.

The kernels are compiled for sm_90 by Triton itself (its own ``ptxas``, no GPU needed) and every launch runs
Triton's whole Python launch path: on the first launch of a variant ``kernel[grid](...)`` (binding, specialization,
compilation, cache), then spadenorm's direct launch of the compiled kernel (``spadenorm.backends.triton.launcher``),
which calls the launcher as ``JITFunction.run`` does. A stand-in driver (:class:`benchmarks.stub_driver.
HostOnlyDriver`) stubs what needs a GPU: the CUDA module load and Triton's ``CudaLauncher`` (its scratch-buffer
checks and ``cuLaunchKernelEx``, a few microseconds per launch on a GPU host, not counted here). Everything else is
timed: argument checks, backend dispatch, the launch plan, autograd, allocation, the launches' arguments and keys.
The tensors are tiny CPU tensors (2 x 8 x 8 x 8), so that the few torch operations of a call (allocations, the sums
of partial tables) cost what their launch costs on a GPU rather than CPU arithmetic; CUDA allocations through the
caching allocator cost about as much as these.

Per path, the median over ``--repeat`` rounds of ``--calls`` calls (microseconds per call), in wall-clock time and in
the calling thread's CPU time (``time.thread_time``; on a shared machine the wall clock also counts the time other
processes hold the core; on an idle one the two agree):

* ``row forward`` / ``row forward+backward``: ``modulated_norm``, instance statistics on the row kernels, spatial
  gamma and beta (forward without gradients: ``torch.no_grad``); ``module ...``: the same through
  ``ParamFreeNorm.modulate``, as a SPADE layer calls it (its statistics spec built once);
* ``row forward, kernel[grid] each launch``: the row forward with the direct launch turned off: Triton's binder on
  every launch;
* ``split-row forward`` / ``+backward``: the same forced onto partial statistics, finalize, modulate;
* ``batch forward+backward``: batch statistics with running estimates (split-row);
* ``clade forward+backward``: class tables and a label map;
* ``floor: ...``: an ``autograd.Function`` whose forward and backward only allocate their outputs, the part of every
  row above that no implementation of an autograd op in Python avoids.

Usage: ``python benchmarks/host_overhead.py [--calls 300] [--repeat 9] [--json PATH]`` (compiles about a dozen
variants first, a minute or two).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.pop("TRITON_INTERPRET", None)  # real JIT functions: compiled for sm_90, launched through Triton

import torch
from triton.runtime import driver

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, also when spadenorm is not installed
import spadenorm
from benchmarks.stub_driver import HostOnlyDriver, NoLaunch
from benchmarks.variants import planned_as
from spadenorm.backends.triton import launcher, occupancy
from spadenorm.backends.triton.plan import overridden
from spadenorm.functional import class_modulated_norm, modulated_norm

GPU = occupancy.Device(132, occupancy.HOPPER)


class _EmptyOp(torch.autograd.Function):
    """Allocates its outputs and nothing else: the cost of an autograd.Function call itself."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, gamma)
        return torch.empty_like(x)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, gamma = ctx.saved_tensors
        return torch.empty_like(x), torch.empty_like(gamma), torch.empty_like(gamma)


class _EmptyCallOp(torch.autograd.Function):
    """:class:`_EmptyOp` with the fused op's ten arguments and context: its outputs and the statistics allocated,
    the same tensors saved (the absent ones as None), the call's context kept; the floor of the op's own structure."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, labels: Any, scale: Any,
                shift: Any, spec: Any, running: Any, factor: Any, plan: Any) -> torch.Tensor:  # fmt: skip
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, gamma, None, labels, scale, x.new_empty((2, *x.shape[:2])))
        ctx.call = (spec, plan, (beta.shape, beta.dtype), None)
        return torch.empty_like(x)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        x, gamma, *_ = ctx.saved_tensors
        return torch.empty_like(x), torch.empty_like(gamma), torch.empty_like(gamma), *(None,) * 7


@contextmanager
def _binder_every_launch() -> Iterator[None]:
    saved = launcher.DIRECT
    launcher.DIRECT = False
    launcher.clear()
    try:
        yield
    finally:
        launcher.DIRECT = saved


def _paths() -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """Per path: (the call, the context it is measured in, as a factory)."""
    shape = (2, 8, 8, 8)
    x, gamma, beta, dy = (torch.randn(shape) for _ in range(4))
    for t in (x, gamma, beta):
        t.requires_grad_(True)
    running_mean, running_var = torch.zeros(8), torch.ones(8)
    labels = torch.randint(0, 19, (2, 8, 8))
    tables = [torch.randn(19, 8, requires_grad=True) for _ in range(2)]
    layer = spadenorm.ParamFreeNorm(8, "instance")

    def no_grad(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with torch.no_grad():
                return fn()

        return run

    def grad(fn: Callable[[], torch.Tensor], inputs: tuple[torch.Tensor, ...]) -> Callable[[], Any]:
        return lambda: torch.autograd.grad(fn(), inputs, dy)

    def row() -> torch.Tensor:
        return modulated_norm(x, gamma, beta)

    def module() -> torch.Tensor:
        return layer.modulate(x, gamma, beta)

    def split() -> Any:
        return overridden(row_kernels=False)

    def batch() -> torch.Tensor:
        return modulated_norm(x, gamma, beta, norm="batch", running_mean=running_mean, running_var=running_var)

    plain = _nothing
    return {
        "row forward": (no_grad(row), plain),
        "row forward+backward": (grad(row, (x, gamma, beta)), plain),
        "module forward (ParamFreeNorm.modulate)": (no_grad(module), plain),
        "module forward+backward (ParamFreeNorm.modulate)": (grad(module, (x, gamma, beta)), plain),
        "row forward, kernel[grid] each launch": (no_grad(row), _binder_every_launch),
        "row forward+backward, kernel[grid] each launch": (grad(row, (x, gamma, beta)), _binder_every_launch),
        "split-row forward": (no_grad(row), split),
        "split-row forward+backward": (grad(row, (x, gamma, beta)), split),
        "batch forward+backward": (grad(batch, (x, gamma, beta)), plain),
        "clade forward+backward": (grad(lambda: class_modulated_norm(x, labels, *tables), (x, *tables)), plain),
        "floor: empty autograd.Function forward": (no_grad(lambda: _EmptyOp.apply(x, gamma, beta)), plain),
        "floor: empty autograd.Function forward+backward": (
            grad(lambda: _EmptyOp.apply(x, gamma, beta), (x, gamma, beta)),
            plain,
        ),
    }


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def measure(calls: int, repeat: int, names: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Per path: the median microseconds per call, wall clock (``us``) and the calling thread's CPU time
    (``cpu_us``: what other processes on a shared machine do not inflate), and the launches per call."""
    driver.set_active(HostOnlyDriver(90))
    results = {}
    with planned_as(GPU):
        for name, (run, context) in _paths().items():
            if names is not None and name not in names:
                continue
            with context():
                for _ in range(20):  # warm-up: compiles each variant, fills the caches
                    run()
                before = NoLaunch.launches
                run()
                launches = NoLaunch.launches - before
                wall, cpu = [], []
                for _ in range(repeat):
                    start, start_cpu = time.perf_counter(), time.thread_time()
                    for _ in range(calls):
                        run()
                    cpu.append((time.thread_time() - start_cpu) / calls * 1e6)
                    wall.append((time.perf_counter() - start) / calls * 1e6)
            results[name] = {"us": statistics.median(wall), "cpu_us": statistics.median(cpu), "launches": launches}
    return results


def breakdown(calls: int, repeat: int) -> list[tuple[str, float]]:
    """Where the module forward+backward's host time goes: the call measured with its layers replaced, from the
    bottom up and cumulatively, by what each must at least do (allocate the tensors it returns), then the floor with
    the op's own arguments and context; each row is the median microseconds per call, and the difference between
    consecutive rows is the host time of the layer replaced between them."""
    from spadenorm.backends.triton import autograd, launch, ops

    x, gamma, beta, dy = (torch.randn(2, 8, 8, 8) for _ in range(4))
    for t in (x, gamma, beta):
        t.requires_grad_(True)
    layer = spadenorm.ParamFreeNorm(8, "instance")
    function = autograd.TritonModulatedNorm

    def run_row_forward(v: Any, x: torch.Tensor, *_: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.empty_like(x), x.new_empty((2, *x.shape[:2]))

    def row_backward(dy: torch.Tensor, x: torch.Tensor, *_: Any) -> tuple[torch.Tensor, ...]:
        return torch.empty_like(x), torch.empty_like(x), torch.empty_like(x), x.new_empty((4, *x.shape[:2]))

    saved = (launch.run_row_forward, ops._LAUNCHERS[ops.row_backward], function.forward, function.backward)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("module forward+backward", lambda: None),
        ("forward launch: allocations only", lambda: setattr(launch, "run_row_forward", run_row_forward)),
        ("backward launch: allocations only", lambda: ops._LAUNCHERS.__setitem__(ops.row_backward, row_backward)),
        (
            "autograd backward: allocations only",
            lambda: setattr(function, "backward", staticmethod(_EmptyCallOp.backward)),
        ),
        (
            "autograd forward: allocations and context only",
            lambda: setattr(function, "forward", staticmethod(_EmptyCallOp.forward)),
        ),
    ]

    def call() -> Any:
        return torch.autograd.grad(layer.modulate(x, gamma, beta), (x, gamma, beta), dy)

    rows = []
    driver.set_active(HostOnlyDriver(90))
    try:
        with planned_as(GPU):
            for name, replace in steps:
                replace()
                rows.append((name, _median_us(call, calls, repeat)))
    finally:
        launch.run_row_forward, ops._LAUNCHERS[ops.row_backward] = saved[:2]
        function.forward, function.backward = staticmethod(saved[2]), staticmethod(saved[3])
    floor = _EmptyCallOp.apply
    args = (None, None, None, layer.spec, None, 0.0, None)
    rows.append(("floor: the op's arguments and context, called directly", _median_us(
        lambda: torch.autograd.grad(floor(x, gamma, beta, *args), (x, gamma, beta), dy), calls, repeat)))  # fmt: skip
    return rows


def _median_us(run: Callable[[], Any], calls: int, repeat: int) -> float:
    for _ in range(20):
        run()
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--paths", nargs="*", help="measure only these paths (by name)")
    parser.add_argument("--breakdown", action="store_true", help="where the module forward+backward's time goes")
    args = parser.parse_args()
    if args.breakdown:
        rows = breakdown(args.calls, args.repeat)
        print("| module forward+backward, with | microseconds per call | the layer replaced |")
        print("|---|---:|---:|")
        for (name, us), previous in zip(rows, [None, *rows[:-1]], strict=True):
            print(f"| {name} | {us:.1f} | {'' if previous is None else f'{previous[1] - us:.1f}'} |")
        return
    results = measure(args.calls, args.repeat, args.paths)
    import triton

    print(f"torch {torch.__version__}, triton {triton.__version__}, {torch.get_num_threads()} threads, device work "
          f"stubbed; median of {args.repeat} rounds of {args.calls} calls")  # fmt: skip
    print("| path | launches | microseconds per call, wall clock | thread CPU time |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['launches']:.0f} | {r['us']:.1f} | {r['cpu_us']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
