"""Python time per call of the Triton backend with every kernel stubbed out: what the host adds to each layer.

Each Triton kernel in ``spadenorm.backends.triton.launch`` is replaced by a stand-in that accepts the launch and runs
nothing, so what is timed is the rest of a call: argument checks, backend dispatch, autograd, launch planning and
output allocation, on tiny CPU tensors (2 x 8 x 8 x 8) so that the few torch operations of a call (allocations, the
sums of partial tables) cost what their launch costs on a GPU rather than CPU arithmetic. Triton's own launch cost
(binding about 40 arguments, a few microseconds per launch) is not included.

Per path, the median over ``--repeat`` rounds of ``--calls`` calls (microseconds per call):

* ``row forward`` / ``row forward+backward``: instance statistics on the row kernels, spatial gamma and beta;
* ``split-row forward`` / ``+backward``: the same forced onto partial statistics, finalize, modulate;
* ``batch forward+backward``: batch statistics with running estimates (always split-row);
* ``clade forward+backward``: class tables and a label map;
* ``floor: ...``: an ``autograd.Function`` whose forward and backward only allocate their outputs, the part of every
  row above that no implementation of an autograd op in Python avoids.

Usage: ``python benchmarks/host_overhead.py [--calls 200] [--repeat 5] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TRITON_INTERPRET", "1")  # CPU tensors reach the Triton backend; no kernel runs anyway

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, also when spadenorm is not installed
import spadenorm
from spadenorm.backends.triton import launch
from spadenorm.functional import class_modulated_norm, modulated_norm

KERNELS = [name for name in dir(launch) if name.startswith("_") and name.endswith("_kernel")]


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


class _Stub:
    """``kernel[grid](...)`` that launches nothing."""

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def _paths() -> dict[str, Callable[[], Any]]:
    shape = (2, 8, 8, 8)
    x, gamma, beta, dy = (torch.randn(shape) for _ in range(4))
    for t in (x, gamma, beta):
        t.requires_grad_(True)
    running_mean, running_var = torch.zeros(8), torch.ones(8)
    labels = torch.randint(0, 19, (2, 8, 8))
    tables = [torch.randn(19, 8, requires_grad=True) for _ in range(2)]

    def forward(**kwargs: Any) -> Callable[[], Any]:
        def run() -> Any:
            with torch.no_grad():
                return modulated_norm(x, gamma, beta, **kwargs)

        return run

    def forward_backward(fn: Callable[[], torch.Tensor], inputs: tuple[torch.Tensor, ...]) -> Callable[[], Any]:
        return lambda: torch.autograd.grad(fn(), inputs, dy)

    return {
        "row forward": forward(),
        "row forward+backward": forward_backward(lambda: modulated_norm(x, gamma, beta), (x, gamma, beta)),
        "split-row forward": lambda: _forced_split(forward()),
        "split-row forward+backward": lambda: _forced_split(
            forward_backward(lambda: modulated_norm(x, gamma, beta), (x, gamma, beta))
        ),
        "batch forward+backward": forward_backward(
            lambda: modulated_norm(x, gamma, beta, norm="batch", running_mean=running_mean, running_var=running_var),
            (x, gamma, beta),
        ),
        "clade forward+backward": forward_backward(lambda: class_modulated_norm(x, labels, *tables), (x, *tables)),
        "floor: empty autograd.Function forward": lambda: _no_grad(lambda: _EmptyOp.apply(x, gamma, beta)),
        "floor: empty autograd.Function forward+backward": forward_backward(
            lambda: _EmptyOp.apply(x, gamma, beta), (x, gamma, beta)
        ),
    }


def _no_grad(run: Callable[[], Any]) -> Any:
    with torch.no_grad():
        return run()


def _forced_split(run: Callable[[], Any]) -> Any:
    with launch.overridden(row_kernels=False):
        return run()


def measure(calls: int, repeat: int) -> dict[str, float]:
    """Median microseconds per call of each path, kernels stubbed."""
    saved = {name: getattr(launch, name) for name in KERNELS}
    try:
        for name in KERNELS:
            setattr(launch, name, _Stub())
        results = {}
        with spadenorm.use_backend("triton"):
            for name, run in _paths().items():
                for _ in range(20):  # warm-up: first-call caches
                    run()
                rounds = []
                for _ in range(repeat):
                    start = time.perf_counter()
                    for _ in range(calls):
                        run()
                    rounds.append((time.perf_counter() - start) / calls * 1e6)
                results[name] = statistics.median(rounds)
        return results
    finally:
        for name, kernel in saved.items():
            setattr(launch, name, kernel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results = measure(args.calls, args.repeat)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, kernels stubbed")
    print("| path | microseconds per call |")
    print("|---|---:|")
    for name, us in results.items():
        print(f"| {name} | {us:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
