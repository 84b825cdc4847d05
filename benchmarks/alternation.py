"""What the CPU model benchmarks share: a model's copy on the original SPADE formulation, and variants timed in
alternation.

Alternation: every round runs each variant once, in an order reversed from one round to the next, so that drifts in
the machine's load hit all variants alike; each call's wall-clock and process CPU time are kept, and the per-round
ratios against a baseline are what the tables report (their median and range).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch

import spadenorm
from spadenorm.reference import OriginalSPADE

ORIGINAL_NORM = {"instance": "instance", "batch": "batch", "sync_batch": "batch"}
"""The original layer's norm for each spadenorm statistics kind (sync-batch in one process is batch norm)."""

Times = dict[str, dict[str, list[float]]]
"""Per variant: ``{"wall_s": [...], "cpu_s": [...]}``, one entry per round."""


def to_original_formulation(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model`` in which every ``spadenorm.SPADE`` is an ``OriginalSPADE`` of equal weights."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if not isinstance(module, spadenorm.SPADE):
            continue
        original = OriginalSPADE(
            ORIGINAL_NORM[module.param_free_norm.norm],
            module.mlp_gamma.kernel_size[0],
            module.num_features,
            module.label_nc,
            hidden_channels=module.mlp_gamma.in_channels,
        )
        original.load_state_dict(module.state_dict(), strict=True)
        original.to(next(module.parameters()))  # device and dtype (the memory format is the caller's business)
        original.train(module.training)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, original)
    return model


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def alternate(benchmark: Any, variants: dict[str, Callable[[], Any]], rounds: int) -> Times:
    """Time ``variants`` in alternation for ``rounds`` rounds under pytest-benchmark (which times each round).

    Untimed warm-up rounds run first: two when benchmarking, one with ``--benchmark-disable`` (where pytest-benchmark
    runs one round). With one warm-up round, the first timed round of the ADE20K generator took the original
    formulation 9.8 to 11.8 s against about 8 s in the later rounds of the same runs, which favoured the other
    variants (the cause was not established); after a second it did not (7.7 to 8.9 s). Every call runs on the
    ``"torch"`` backend.
    """
    times: Times = {name: {"wall_s": [], "cpu_s": []} for name in variants}
    order = list(variants)
    with spadenorm.use_backend("torch"):
        for _ in range(1 if benchmark.disabled else 2):
            for name in order:
                variants[name]()

    def one_round() -> None:
        with spadenorm.use_backend("torch"):
            for name in order:
                wall, cpu = timed(variants[name])
                times[name]["wall_s"].append(wall)
                times[name]["cpu_s"].append(cpu)
        order.reverse()

    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    return times


def ratios(times: Times, numerator: str, denominator: str) -> dict[str, list[float]]:
    """Per-round ratios ``numerator / denominator`` of wall-clock and CPU time."""
    return {
        kind: [a / b for a, b in zip(times[numerator][kind], times[denominator][kind], strict=True)]
        for kind in ("wall_s", "cpu_s")
    }
