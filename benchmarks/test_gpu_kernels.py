"""GPU timings of normalize-and-modulate: spadenorm's Triton kernels against eager and compiled PyTorch.

What is measured, per case (statistics, shape, dtype, pass, implementation):

* **device time** (the figure the report is built on): CUDA events around one call, L2 flushed before each call,
  the host kept ahead of the GPU so that Python and launch overhead stay out (:mod:`benchmarks.gpu_timing`); median
  of 25 calls after 3 warm-up calls;
* **op time**: wall clock of one call from Python until the GPU is done, after an untimed flush and
  synchronization (pytest-benchmark's rounds: the ``stats`` of the JSON);
* the relative error of the output and of the input gradients against float64 eager PyTorch on the same inputs
  (recorded, never asserted: a benchmark reports, the tests in ``tests/`` check);
* the launch override in force (``path``) and, where the library can describe it, the paths its launch plan chose.

Passes: ``forward`` is the training forward (inputs require grad, as in a generator's training step), ``backward`` is
``torch.autograd.grad`` of a fresh forward graph made (untimed) before each timed call, ``forward+backward`` both.
Implementations: ``eager`` (``norm(x) * (1 + gamma) + beta`` in PyTorch), ``compiled`` (``torch.compile(dynamic=False)``
of the same function, one graph per shape and dtype), ``spadenorm`` (``modulated_norm`` on the Triton backend, the
launch plan's choice) and ``spadenorm <path>`` (a path forced through ``plan.overridden``, in force for the forward
*and* the backward of every call; a forced path that does not apply to a case, which the launch would replace by its
fallback, is skipped with the plan it would run). Inputs are drawn on the GPU. The report (GB/s against the ideal
bytes, fraction of the measured copy bandwidth, speedups) is computed by ``benchmarks/summarize.py``.

The case matrix, one pytest function per step of ``benchmarks/gpu_suite.sh``, in order of importance (a step that
runs out of time skips its remaining cases, so each list starts with what matters most):

* ``test_core``: instance statistics, spatial gamma/beta, spadenorm and eager, all three passes. Batch 8: every
  ADE20K 256x256 SPADE layer input (``shapes.ADE20K_256``) and the ``fmiddle`` inputs of the blocks' second norms
  (``shapes.ADE20K_256_FMIDDLE``), fp32 and bf16, large shapes first. Batch 1: up_0 to up_3 and the fmiddle shapes in
  bf16, up_3 and up_3.norm_1 in fp32.
* ``test_compiled``: the compiled baseline, only where device time is large enough for a compiler to matter (each
  graph costs seconds of compilation): instance up_1, up_3 and up_3.norm_1 at batch 8 in bf16, up_3 in fp32, batch
  and group statistics at up_1 in bf16, and the conditional models of ``shapes.CONDITIONAL_MODELS`` in bf16.
* ``test_paths``: each path the launch plan chooses between, forced (the split-row path; resident and persistent
  row kernels for instance rows, resident and swept for group rows), on one shape per shape class: medium rows
  (up_1), short rows where the resident backward runs on its own tiles (up_0), long rows (up_3), fewer long rows
  (batch 1 up_2 and up_3.norm_1); bf16; group statistics at up_1.
* ``test_kinds``: batch, sync_batch (one process, no process group) and group (32 groups) statistics against eager at
  G_middle, up_1 and up_3, batch 8, fp32 and bf16; batch 1 at up_2 in bf16; fp16 for instance (up_1, up_3) and group
  (up_1) statistics; forward+backward of today's conditional models (``shapes.CONDITIONAL_MODELS``: a diffusion
  block's group statistics with the timestep scale and shift, a 3-D instance-normalized volume) in fp16 and bf16.
* ``test_clade``: ``class_modulated_norm`` at 8x512x64x64 with blocky label maps of 151 (ADE20K) and 35 (Cityscapes)
  classes and uniformly random labels of 151 classes, fp32 and bf16, all three passes, against spatial SPADE of the
  same shape (from ``test_core``) and an eager CLADE (table gather, then the eager formula) on the blocky ADE20K maps.

* ``test_label_conv``: SPADE fed class ids, whose first convolution runs as table lookups, against the original
  formulation (``OriginalSPADE`` layers fed the one-hot map) under bf16 autocast, forward+backward: the ADE20K
  generator at batch 1 (``shapes.GENERATORS``), then at batch 8 the up_3 SPADE layer (original, spadenorm fed the
  map, fed the ids, and fed the ids with ``fuse_gamma_beta``), the lookup alone against the convolution of the
  prebuilt one-hot map (forward, backward), and the default run's generator. The norms run on the ``"torch"``
  backend here (the Triton kernels are timed in the steps above; no kernel compiles in this one). Recorded beside
  the device time: peak memory, the bytes saved for backward and the output's error against the original
  formulation.

Cut, to fit one run of the suite into about six minutes of a GPU: the Cityscapes shapes (the same channel counts as
ADE20K at twice the area, so no new shape class), layer statistics (group statistics with one group: the group
kernels are timed), channels_last inputs, fp32 and fp16 for most path and kind cases (bf16 is the training dtype;
fp32 is kept where it changes the path: long rows), the backward and forward passes alone for the conditional models,
compiled baselines at shapes under 16 MiB (host-bound at those sizes), and eager CLADE on label maps other than the
blocky ADE20K ones (eager's gather does not depend on the map's layout), and for the lookup the Cityscapes
configuration, fp32, and the generator fed the one-hot map. :func:`estimated_seconds` is the cost model used to size
each step (the Triton variants counted by recording the cases' launches, the caches warm from
``benchmarks/gpu_precompile.py``; a :class:`LookupCase` gives its own share), :func:`estimated_precompile_seconds`
that of the pre-compile step (cold caches); the JSON records each case's preparation and measurement time, so the
first run calibrates them.

Run: ``benchmarks/gpu_suite.sh`` (or ``python -m pytest benchmarks/test_gpu_kernels.py -o addopts="" --benchmark-enable
--benchmark-json=OUT.json``). Skipped without CUDA. The variable ``SPADENORM_BENCH_DEADLINE`` (seconds since the epoch)
makes every case that would start after it skip; ``SPADENORM_GPU_ENV`` names the JSON of ``gpu_preflight.py``, whose
copy bandwidth is then recorded instead of measuring it again.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import spadenorm
from spadenorm.functional import class_modulated_norm, modulated_norm

from .gpu_timing import LABEL_MAPS, DeviceTimer, copy_bandwidth
from .shapes import ADE20K_256, ADE20K_256_FMIDDLE, CONDITIONAL_MODELS, GENERATORS, conditional_original

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("forward", "backward", "forward+backward")
GROUPS = 32
REPS, WARMUP, OP_ROUNDS = 25, 3, 10
LAYERS = {name: (c, h, w) for name, c, h, w in ADE20K_256 + ADE20K_256_FMIDDLE}
MODELS = cast(dict[str, dict[str, Any]], CONDITIONAL_MODELS)  # the conditional models by name
CLADE_LAYER = "up_1"  # 8x512x64x64: where the class tables replace a 512-channel spatial map

PATHS: dict[str, dict[str, object]] = {
    "rule": {},
    "split-row": {"row_kernels": False},
    "rows-resident": {"row_kernels": True, "row_strategy": "resident"},
    "rows-swept": {"row_kernels": True, "row_strategy": "swept"},
    "rows-persistent": {"row_kernels": True, "row_strategy": "persistent"},
}
"""Launch overrides by path name (``plan.LaunchOverrides`` fields; none: the launch plan decides)."""
ROW_PATHS = ("split-row", "rows-resident", "rows-persistent")  # NCHW instance rows: swept does not apply


# ------------------------------------------------------------------------------------------------------ case matrix
@dataclass(frozen=True)
class Case:
    """One measurement: statistics ``kind`` of ``layer`` at ``batch``, in ``dtype``, one pass, one implementation."""

    step: str
    kind: str
    layer: str
    batch: int
    dtype: str
    mode: str
    impl: str
    path: str = "rule"
    labels: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        if self.layer in MODELS:
            return tuple(MODELS[self.layer]["shape"])
        return (self.batch, *LAYERS[self.layer])

    @property
    def second(self) -> bool:
        """Whether the case has the second, per-(n, c) modulation (a diffusion block's timestep scale and shift)."""
        return self.layer in MODELS and bool(MODELS[self.layer]["second"])

    @property
    def shape_text(self) -> str:
        return "x".join(map(str, self.shape))

    @property
    def column(self) -> str:
        """The implementation as the report's column: ``spadenorm``, ``spadenorm <path>``, ``eager``, ``compiled``."""
        return self.impl if self.path == "rule" else f"{self.impl} {self.path}"

    @property
    def row(self) -> str:
        """The report's row (pytest-benchmark group): statistics or label map, layer, shape, dtype, pass."""
        what = self.kind if self.labels is None else f"clade-{self.labels}"
        return f"{what} {self.layer} {self.shape_text} {self.dtype} {self.mode}"

    @property
    def id(self) -> str:
        return f"{self.row.replace(' ', '-')}-{self.column.replace(' ', '-')}"


def _cases(
    step: str,
    kinds: Sequence[str],
    layers: Sequence[str],
    batch: int,
    dtypes: Sequence[str],
    impls: Sequence[str],
    paths: Sequence[str] = ("rule",),
    labels: Sequence[str | None] = (None,),
    modes: Sequence[str] = MODES,
) -> list[Case]:
    """The product, in the order of the arguments (outermost first: layers, dtypes, kinds, labels, impls, paths)."""
    return [
        Case(step, kind, layer, batch, dtype, mode, impl, path, label)
        for layer in layers
        for dtype in dtypes
        for kind in kinds
        for label in labels
        for impl in impls
        for path in paths
        for mode in modes
    ]


# Batch 8: the bandwidth-bound layers first (largest device times), then the small ones, then the fmiddle inputs.
BATCH8_ORDER = [
    *("up_1", "up_2", "up_3", "up_3.norm_1"),
    *("up_0", "G_middle", "head_0"),
    *("up_0.norm_1", "up_1.norm_1", "up_2.norm_1"),
]
BATCH1_LAYERS = ["up_0", "up_1", "up_2", "up_3", "up_0.norm_1", "up_1.norm_1", "up_2.norm_1", "up_3.norm_1"]
BOTH = ("bf16", "fp32")
PAIR = ("spadenorm", "eager")

CORE = (
    _cases("core", ["instance"], BATCH8_ORDER, 8, BOTH, PAIR)
    + _cases("core", ["instance"], BATCH1_LAYERS, 1, ["bf16"], PAIR)
    + _cases("core", ["instance"], ["up_3", "up_3.norm_1"], 1, ["fp32"], PAIR)
)


def _conditional(step: str, impls: Sequence[str], dtypes: Sequence[str]) -> list[Case]:
    """Forward+backward of today's conditional models' normalization (``shapes.CONDITIONAL_MODELS``)."""
    return [
        Case(step, str(config["norm"]), name, config["shape"][0], dtype, "forward+backward", impl)
        for name, config in MODELS.items()
        for dtype in dtypes
        for impl in impls
    ]


COMPILED = (
    _cases("compiled", ["instance"], ["up_1", "up_3", "up_3.norm_1"], 8, ["bf16"], ["compiled"])
    + _cases("compiled", ["instance"], ["up_3"], 8, ["fp32"], ["compiled"])
    + _cases("compiled", ["batch", "group"], ["up_1"], 8, ["bf16"], ["compiled"])
    + _conditional("compiled", ["compiled"], ["bf16"])
)
GROUP_ROW_PATHS = ("split-row", "rows-resident", "rows-swept")  # a group's rows: resident or swept
PATH_CASES = (
    _cases("paths", ["instance"], ["up_1", "up_0", "up_3"], 8, ["bf16"], ["spadenorm"], ROW_PATHS)
    + _cases("paths", ["instance"], ["up_2", "up_3.norm_1"], 1, ["bf16"], ["spadenorm"], ROW_PATHS)
    + _cases("paths", ["group"], ["up_1"], 8, ["bf16"], ["spadenorm"], GROUP_ROW_PATHS)
)
KINDS = (
    _cases("kinds", ["batch", "sync_batch", "group"], ["up_1", "up_3", "G_middle"], 8, BOTH, PAIR)
    + _cases("kinds", ["batch", "sync_batch", "group"], ["up_2"], 1, ["bf16"], PAIR)
    + _cases("kinds", ["instance"], ["up_1", "up_3"], 8, ["fp16"], PAIR)
    + _cases("kinds", ["group"], ["up_1"], 8, ["fp16"], PAIR)
    + _conditional("kinds", PAIR, ["fp16", "bf16"])
)
CLADE = [
    case
    for labels in LABEL_MAPS
    for dtype in BOTH
    for case in _cases("clade", ["instance"], [CLADE_LAYER], 8, [dtype], ["clade"], labels=[labels])
] + _cases("clade", ["instance"], [CLADE_LAYER], 8, BOTH, ["eager"], labels=["blocky151"])

LOOKUP_CLASSES = 151  # ADE20K's semantic channels


@dataclass(frozen=True)
class LookupCase:
    """One measurement of the label lookup: ``model`` (``"generator <config>"``, ``"layer <name>"`` or ``"op <name>"``,
    the mlp_shared convolution of that layer alone) at ``batch`` under ``dtype`` autocast, one pass, one
    implementation: ``original`` (the original formulation fed the one-hot map; for ``op`` the convolution of the
    prebuilt map), ``spadenorm map`` (fed the map), ``spadenorm ids`` (fed the class ids: the lookup),
    ``spadenorm ids fused`` (and ``fuse_gamma_beta``)."""

    step: str
    model: str
    batch: int
    dtype: str
    mode: str
    impl: str
    path: str = "rule"
    labels: str | None = None

    @property
    def row(self) -> str:
        return f"lookup {self.model} batch {self.batch} {self.dtype} {self.mode}"

    @property
    def column(self) -> str:
        return self.impl

    @property
    def id(self) -> str:
        return f"{self.row.replace(' ', '-')}-{self.impl.replace(' ', '-')}"

    @property
    def calls_s(self) -> float:
        """A pessimistic device time of one call (bf16 on a current GPU)."""
        kind, name = self.model.split(" ")
        per_sample = {"generator": 0.02 if name == "ade20k_256" else 0.001, "layer": 0.002, "op": 0.001}[kind]
        return per_sample * self.batch

    @property
    def estimated_s(self) -> float:
        """This case's share of the step's time: its calls and, for the first case of a model, building the model."""
        first = self.impl == "original" and self.mode in ("forward+backward", "forward")
        return CASE_S + CALLS * self.calls_s + (LOOKUP_BUILD_S[self.model.split(" ")[0]] if first else 0.0)


LOOKUP_BUILD_S = {"generator": 2.0, "layer": 0.5, "op": 0.2}
"""Building a model of each kind on the GPU (weights initialised there), its reference output, the saved-bytes count."""


def _lookup(
    model: str, batch: int, impls: Sequence[str], modes: Sequence[str] = ("forward+backward",)
) -> list[LookupCase]:
    return [LookupCase("label_conv", model, batch, "bf16", mode, impl) for mode in modes for impl in impls]


LOOKUP_IMPLS = ("original", "spadenorm ids")
LABEL_CONV = (
    _lookup("generator ade20k_256", 1, LOOKUP_IMPLS)
    + _lookup("layer up_3", 8, ("original", "spadenorm map", "spadenorm ids", "spadenorm ids fused"))
    + _lookup("op up_3", 8, LOOKUP_IMPLS, ("forward", "backward"))
    + _lookup("generator default_64", 8, LOOKUP_IMPLS)
)

STEPS: dict[str, list[Any]] = {
    "core": CORE,
    "compiled": COMPILED,
    "paths": PATH_CASES,
    "kinds": KINDS,
    "clade": CLADE,
    "label_conv": LABEL_CONV,
}
"""The cases of each step of ``gpu_suite.sh``, in the order they run."""


# ------------------------------------------------------------------------------------------------------- cost model
PROCESS_S = 10.0  # interpreter, torch, CUDA context, spadenorm, pytest and pytest-benchmark
CASE_S = 0.05  # per case: inputs, pytest, warm-up and timed calls at small sizes (flush and host lead included)
CALLS = 40  # calls of the case's step per case: warm-up, timed, op rounds, accuracy check
SLOW_GBS = 1000.0  # a pessimistic bandwidth for the calls' device time (eager moves several times the ideal bytes)
JIT_COLD_S = 1.5  # a Triton variant's first launch with a cold cache: compile, ptxas, the launcher built (3.6)
JIT_WARM_S = 0.1  # the same from the caches gpu_precompile.py filled: load the cubin and the launcher
INDUCTOR_COLD_S = (30.0, 20.0)  # torch.compile, cold caches: first graph of a process (workers, imports), each more
INDUCTOR_WARM_S = (10.0, 4.0)  # the same from the caches gpu_precompile.py filled: tracing, cache lookups, loading
PRECOMPILE_START_S = 25.0  # gpu_precompile.py: the pools' processes importing torch and Triton, CUDA contexts
PRECOMPILE_WORKERS = 16  # the GPU machine's host cores
INDUCTOR_WORKERS = 4


def ideal_bytes(case: Case) -> int:
    """Bytes the ideal kernel moves (each tensor read or written once).

    Spatial gamma/beta: x, gamma, beta read and y written forward; dy, x, gamma read and dx, dgamma written backward
    (dbeta is dy). With the second modulation the backward also reads beta (for the scale's gradient) and writes dbeta
    (now dy times (1 + scale)); the (N, C) scale and shift are negligible. CLADE: x, labels, tables read and y written
    forward; dy, x, labels, gamma table read and dx, table gradients written backward.
    """
    numel = 1
    for size in case.shape:
        numel *= size
    elem = DTYPES[case.dtype].itemsize
    if case.labels is None:
        backward = 7 if case.second else 5
        per = {"forward": 4, "backward": backward, "forward+backward": 4 + backward}[case.mode]
        return per * numel * elem
    n, c, h, w = case.shape
    k = LABEL_MAPS[case.labels][1]
    label_bytes = n * h * w * 8
    forward = 2 * numel * elem + label_bytes + 2 * k * c * elem
    backward = 3 * numel * elem + label_bytes + 3 * k * c * elem
    return {"forward": forward, "backward": backward, "forward+backward": forward + backward}[case.mode]


def estimated_seconds(cases: Sequence[Any], warm: bool = True) -> float:
    """Estimated wall time of one pytest process running ``cases`` (a model for sizing the steps, not a measurement).

    Process start, plus per case a fixed cost and ``CALLS`` calls at ``SLOW_GBS`` over the ideal bytes, plus the
    first launch of each distinct Triton variant the cases compile (counted by running their calls on the CPU with
    the launches recorded: :func:`benchmarks.gpu_precompile.variants_of`), plus torch.compile per graph; ``warm``:
    after ``gpu_precompile.py`` filled the caches, else with cold ones. A :class:`LookupCase` gives its own share
    (:attr:`LookupCase.estimated_s`).
    """
    from .gpu_precompile import variants_of

    lookup = sum(c.estimated_s for c in cases if isinstance(c, LookupCase))
    cases = [c for c in cases if not isinstance(c, LookupCase)]
    graphs = {(c.kind, c.shape, c.dtype) for c in cases if c.impl == "compiled"}
    measure = lookup + sum(CASE_S + CALLS * ideal_bytes(c) / (SLOW_GBS * 1e9) for c in cases)
    first, more = INDUCTOR_WARM_S if warm else INDUCTOR_COLD_S
    compile_s = first + more * (len(graphs) - 1) if graphs else 0.0
    return PROCESS_S + measure + (JIT_WARM_S if warm else JIT_COLD_S) * len(variants_of(cases)) + compile_s


def estimated_precompile_seconds(cases: list[Case], cuda_test_variants: int) -> float:
    """Estimated wall time of ``gpu_precompile.py`` with cold caches: its pools' start, the variants of ``cases``
    and of the CUDA tests compiled on :data:`PRECOMPILE_WORKERS` processes, the graphs on :data:`INDUCTOR_WORKERS`
    (a graph each at a time, cold)."""
    from .gpu_precompile import variants_of

    variants = len(variants_of(cases)) + cuda_test_variants
    graphs = len({(c.kind, c.shape, c.dtype) for c in cases if c.impl == "compiled"})
    inductor = -(-graphs // INDUCTOR_WORKERS) * INDUCTOR_COLD_S[0]
    return PRECOMPILE_START_S + max(JIT_COLD_S * variants / PRECOMPILE_WORKERS, inductor)


# ---------------------------------------------------------------------------------------------------- implementations
def eager_instance(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    return F.instance_norm(x) * (1 + gamma) + beta


def eager_batch(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    return F.batch_norm(x, None, None, training=True) * (1 + gamma) + beta


def eager_group(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    return F.group_norm(x, GROUPS) * (1 + gamma) + beta


def eager_clade(x: Tensor, labels: Tensor, gamma_table: Tensor, beta_table: Tensor) -> Tensor:
    """CLADE in PyTorch: gather the per-class rows into (N, C, H, W) maps, then the eager formula."""
    return F.instance_norm(x) * gamma_table[labels].permute(0, 3, 1, 2) + beta_table[labels].permute(0, 3, 1, 2)


def eager_diffusion(x: Tensor, gamma: Tensor, beta: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """The diffusion block of ``shapes.CONDITIONAL_MODELS``: group statistics, then the timestep scale and shift."""
    return conditional_original(x, gamma, beta, scale, shift, "group", GROUPS)


def eager_volume(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    """The 3-D volume of ``shapes.CONDITIONAL_MODELS``: instance statistics over (D, H, W)."""
    return conditional_original(x, gamma, beta, None, None, "instance", None)


# One function per statistics kind: torch.compile caches its graphs per function (sync_batch in one process is batch).
EAGER: dict[str, Callable[..., Tensor]] = {
    "instance": eager_instance,
    "batch": eager_batch,
    "sync_batch": eager_batch,
    "group": eager_group,
    "diffusion": eager_diffusion,
    "volume": eager_volume,
}
"""The eager formula by statistics kind, and by name for the conditional models."""


def eager_function(case: Case) -> Callable[..., Tensor]:
    if case.labels is not None:
        return eager_clade
    return EAGER[case.layer if case.layer in MODELS else case.kind]


@functools.cache
def compiled(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``torch.compile(dynamic=False)`` of an eager function: one static graph per shape and dtype."""
    for name in ("recompile_limit", "cache_size_limit"):  # one entry per shape and dtype, beyond the default 8
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 64)
    return torch.compile(fn, dynamic=False)


def fused(kind: Any) -> Callable[..., Tensor]:
    """``modulated_norm`` with ``kind`` statistics on the Triton backend (32 groups for ``group``)."""
    norm_groups = GROUPS if kind == "group" else None

    def call(
        x: Tensor, gamma: Tensor, beta: Tensor, scale: Tensor | None = None, shift: Tensor | None = None
    ) -> Tensor:
        with spadenorm.use_backend("triton"):
            return modulated_norm(x, gamma, beta, norm=kind, num_groups=norm_groups, scale=scale, shift=shift)

    return call


def fused_clade(x: Tensor, labels: Tensor, gamma_table: Tensor, beta_table: Tensor) -> Tensor:
    with spadenorm.use_backend("triton"):
        return class_modulated_norm(x, labels, gamma_table, beta_table)


def implementation(case: Case) -> Callable[..., Tensor]:
    if case.impl == "eager":
        return eager_function(case)
    if case.impl == "compiled":
        return compiled(eager_function(case))
    return fused_clade if case.labels is not None else fused(case.kind)


# ------------------------------------------------------------------------------------------------------ launch paths
def _plan() -> Any:
    from spadenorm.backends.triton import plan

    return plan


@contextlib.contextmanager
def forced_path(fields: Mapping[str, object]) -> Iterator[None]:
    """Force the launch plan's choices in ``fields`` inside the block (nothing when empty), restoring them on exit."""
    if not fields:
        yield
        return
    with _plan().overridden(**fields):
        yield


PLAN_OF_PATH = {
    "split-row": "split-row",
    "rows-resident": "rows resident",
    "rows-swept": "rows swept",
    "rows-persistent": "rows persistent",
}
"""What :func:`describe_plan` says of the forward when a forced path is the one that runs."""
STRATEGY_NAMES = {0: "rows resident", 1: "rows swept", 2: "rows persistent", 3: "split-row", 4: "given statistics"}


def describe_plan(x: Tensor, kind: str, clade: bool, fields: Mapping[str, object]) -> str | None:
    """The paths the plan runs for ``x`` under ``fields``, forward and backward, in words (``None`` when it cannot
    say). A forced path that does not apply to a case (resident rows that do not fit, row kernels for batch
    statistics) leaves the plan's fallback in force: this is how the suite tells. Reads the plan itself
    (``plan.plan_for``)."""
    from spadenorm._core import NormSpec

    plan = _plan()
    try:
        with forced_path(fields):
            spec = NormSpec(kind, GROUPS if kind == "group" else None)
            call = plan.plan_for(x, spec, True, clade, False)
        forward, backward = STRATEGY_NAMES[int(call.strategy)], STRATEGY_NAMES[int(call.backward_strategy)]
        return forward if forward == backward else f"{forward}, backward {backward}"
    except Exception:  # a description is a nicety: never fail a measurement for it
        return None


def make_step(
    call: Callable[[], Tensor], params: tuple[Tensor, ...], dy: Tensor, mode: str, fields: Mapping[str, object]
) -> tuple[Callable[[], Any], Callable[[Any], object]]:
    """``(prepare, run)`` of one pass: ``run(prepare())`` is one call; only ``run`` is timed.

    ``fields`` are forced around the forward *and* the backward. For ``backward``, ``prepare`` runs a fresh forward
    (a compiled backward cannot be replayed on a retained graph) and ``run`` its ``torch.autograd.grad``.
    """

    def nothing() -> None:
        return None

    if mode == "forward":

        def forward(_: None) -> object:
            with forced_path(fields):
                return call()

        return nothing, forward
    if mode == "backward":

        def prepare() -> Tensor:
            with forced_path(fields):
                return call()

        def backward(y: Tensor) -> object:
            with forced_path(fields):
                return torch.autograd.grad(y, params, dy)

        return prepare, backward
    if mode == "forward+backward":

        def forward_backward(_: None) -> object:
            with forced_path(fields):
                return torch.autograd.grad(call(), params, dy)

        return nothing, forward_backward
    raise ValueError(f"unknown pass {mode!r}")


# ------------------------------------------------------------------------------------------------- inputs, accuracy
@dataclass
class Inputs:
    """The differentiable arguments (``params``), the other arguments (``labels``) and the output gradient."""

    params: tuple[Tensor, ...]
    dy: Tensor
    labels: Tensor | None = None

    def args(self) -> tuple[Tensor, ...]:
        if self.labels is None:
            return self.params
        x, gamma_table, beta_table = self.params
        return (x, self.labels, gamma_table, beta_table)


def make_inputs(case: Case, device: torch.device | str = "cuda") -> Inputs:
    """Random inputs of ``case`` drawn on ``device`` (CLADE: a label map and (classes, C) tables)."""
    dtype = DTYPES[case.dtype]
    gen = torch.Generator(device=device).manual_seed(0)
    shape = case.shape

    def randn(*size: int) -> Tensor:
        return torch.randn(size, device=device, dtype=dtype, generator=gen)

    x, dy = randn(*shape), randn(*shape)
    if case.labels is None:
        params: tuple[Tensor, ...] = (x, randn(*shape), randn(*shape))
        if case.second:  # the per-(n, c) scale and shift
            params += (0.1 * randn(*shape[:2]), 0.1 * randn(*shape[:2]))
        return Inputs(tuple(t.requires_grad_(True) for t in params), dy)
    n, c, h, w = shape
    make_labels, k = LABEL_MAPS[case.labels]
    labels = make_labels(n, h, w, k, generator=gen, device=device)
    params = (x, 1 + 0.1 * randn(k, c), 0.1 * randn(k, c))
    return Inputs(tuple(t.requires_grad_(True) for t in params), dy, labels)


def relative_error(value: Tensor, reference: Tensor) -> float:
    """``|value - reference| / |reference|`` in float64 (Euclidean norms over all elements)."""
    ref = reference.detach().double()
    return float(torch.linalg.vector_norm(value.detach().double() - ref) / torch.linalg.vector_norm(ref))


def reference_outputs(case: Case, inputs: Inputs) -> tuple[Tensor, ...]:
    """Output and input gradients of the eager formula in float64 on the same inputs: y, dx, dgamma (or its table)."""
    params = tuple(t.detach().double().requires_grad_(True) for t in inputs.params)
    args = params if inputs.labels is None else (params[0], inputs.labels, *params[1:])
    y = eager_function(case)(*args)
    dx, dgamma = torch.autograd.grad(y, params[:2], inputs.dy.double())
    return y.detach(), dx, dgamma


def accuracy(
    call: Callable[[], Tensor], inputs: Inputs, reference: tuple[Tensor, ...], fields: Mapping[str, object]
) -> dict[str, float]:
    """Relative errors of y, dx and dgamma of one forward+backward under ``fields`` against ``reference``."""
    with forced_path(fields):
        y = call()
        dx, dgamma = torch.autograd.grad(y, inputs.params[:2], inputs.dy)
    return {
        name: relative_error(v, r) for name, v, r in zip(("y", "dx", "dgamma"), (y, dx, dgamma), reference, strict=True)
    }


# ----------------------------------------------------------------------------------------------------- process state
class _State:
    """Per-process state: the timer, the copy bandwidth, and the inputs and references of the latest case."""

    def __init__(self) -> None:
        self.timer: DeviceTimer | None = None
        self.copy: dict[str, Any] | None = None
        self.inputs: tuple[tuple[Any, ...], Inputs] | None = None
        self.references: dict[tuple[Any, ...], tuple[Tensor, ...]] = {}
        self.errors: dict[tuple[Any, ...], dict[str, float]] = {}
        self.unavailable: dict[tuple[Any, ...], str] = {}


STATE = _State()


def timer() -> DeviceTimer:
    if STATE.timer is None:
        STATE.timer = DeviceTimer("cuda")
    return STATE.timer


def copy_reference() -> dict[str, Any]:
    """The copy bandwidth of this run: from ``SPADENORM_GPU_ENV`` (the preflight's JSON) or measured once here."""
    if STATE.copy is None:
        path = Path(os.environ.get("SPADENORM_GPU_ENV") or "-")
        env = json.loads(path.read_text()) if path.is_file() else {}
        if "copy_bandwidth_gbs" in env:
            STATE.copy = {"copy_bandwidth_gbs": env["copy_bandwidth_gbs"], "copy_source": "preflight"}
        else:
            gbs, timing = copy_bandwidth(timer())
            STATE.copy = {"copy_bandwidth_gbs": gbs, "copy_source": "this process", "copy_timing": timing.as_dict()}
    return STATE.copy


def case_inputs(case: Case) -> Inputs:
    """Inputs of ``case``, shared with the other cases of the same shape, dtype and label map (one set kept)."""
    key = (case.shape, case.dtype, case.labels)
    if STATE.inputs is None or STATE.inputs[0] != key:
        STATE.inputs = None
        STATE.references.clear()
        STATE.inputs = (key, make_inputs(case))
    return STATE.inputs[1]


def case_reference(case: Case, inputs: Inputs) -> tuple[Tensor, ...]:
    key = (case.kind, case.labels)
    if key not in STATE.references:
        STATE.references.clear()  # one reference at a time: float64 copies of the largest shapes are gigabytes
        STATE.references[key] = reference_outputs(case, inputs)
    return STATE.references[key]


def run_case(benchmark: Any, case: Case) -> None:
    """Measure ``case``: accuracy check, device time, op time; record everything in ``benchmark.extra_info``."""
    fields = PATHS[case.path]
    started = time.perf_counter()
    inputs = case_inputs(case)
    x = inputs.params[0]
    plan = describe_plan(x, case.kind, case.labels is not None, fields) if case.impl in ("spadenorm", "clade") else None
    if case.path != "rule" and plan is not None and not plan.startswith(PLAN_OF_PATH[case.path]):
        pytest.skip(f"path {case.path} does not apply here: the launch would run {plan}")
    fn = implementation(case)
    args = inputs.args()

    def call() -> Tensor:
        return fn(*args)

    error_key = (case.shape, case.dtype, case.labels, case.kind, case.column)
    if error_key in STATE.unavailable:
        pytest.skip(STATE.unavailable[error_key])
    if error_key not in STATE.errors:  # once per implementation and input: the first pass measured compiles it
        reference = case_reference(case, inputs)
        try:
            STATE.errors[error_key] = accuracy(call, inputs, reference, fields)
        except Exception as err:
            if case.path == "rule":
                raise
            STATE.unavailable[error_key] = f"path {case.path} not available here: {type(err).__name__}: {err}"
            pytest.skip(STATE.unavailable[error_key])
    prepare, run = make_step(call, inputs.params, inputs.dy, case.mode, fields)
    torch.cuda.reset_peak_memory_stats()
    measure_start = time.perf_counter()
    device = timer().time(run, prepare=prepare, reps=REPS, warmup=WARMUP)

    def setup() -> tuple[tuple[Any], dict[str, Any]]:
        arg = prepare()
        timer().flush_and_sync()
        return (arg,), {}

    def op(arg: Any) -> None:
        run(arg)
        torch.cuda.synchronize()

    benchmark.group = case.row
    benchmark.pedantic(op, setup=setup, rounds=OP_ROUNDS, warmup_rounds=0, iterations=1)
    finished = time.perf_counter()
    copy = copy_reference()
    ideal = ideal_bytes(case)
    gbs = ideal / (device.median_ms * 1e-3) / 1e9
    benchmark.extra_info.update(
        device="cuda",
        device_name=torch.cuda.get_device_name(),
        torch=torch.__version__,
        triton=_triton_version(),
        step=case.step,
        kind=case.kind,
        modulation="spatial" if case.labels is None else "class",
        labels=case.labels,
        layer=case.layer,
        shape=list(case.shape),
        dtype=case.dtype,
        mode=case.mode,
        impl=case.column,
        path=case.path,
        overrides=dict(fields),
        plan=plan,
        numel=x.numel(),
        element_size=x.element_size(),
        ideal_bytes=ideal,
        device_ms=device.as_dict(),
        gbs=gbs,
        fraction_of_copy=gbs / copy["copy_bandwidth_gbs"],
        rel_err=STATE.errors[error_key],
        peak_allocated_bytes=torch.cuda.max_memory_allocated(),
        prepare_s=measure_start - started,
        measure_s=finished - measure_start,
        **copy,
    )


# ----------------------------------------------------------------------------------------------- label lookup
@dataclass
class LookupModel:
    """The callables of one :class:`LookupCase` model, by implementation, their differentiable parameters and the
    output gradient."""

    calls: dict[str, Callable[[], Tensor]]
    params: dict[str, tuple[Tensor, ...]]
    dy: Tensor
    errors: dict[str, float] | None = None

    def relative_errors(self) -> dict[str, float]:
        """Each implementation's output against the original's, all called once from the same state (a generator's
        spectral norms take a power-iteration step per training forward), on the ``"torch"`` backend."""
        if self.errors is None:
            with spadenorm.use_backend("torch"):
                reference = self.calls["original"]().detach().float()
                self.errors = {
                    impl: 0.0 if impl == "original" else relative_error(call().float(), reference)
                    for impl, call in self.calls.items()
                }
        return self.errors


def _autocast(dtype: str) -> Any:
    return torch.autocast("cuda", dtype=DTYPES[dtype])


def _lookup_generators(config: str) -> tuple[dict[str, torch.nn.Module], int, int]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from spade_gan.models.generator import SPADEGenerator

    from .alternation import to_original_formulation

    cfg = GENERATORS[config]
    torch.manual_seed(0)
    with torch.device("cuda"):
        ours = SPADEGenerator(cfg["label_nc"], ngf=cfg["ngf"], crop_size=cfg["crop"], norm="sync_batch")
    return {"original": to_original_formulation(ours), "spadenorm ids": ours}, cfg["label_nc"], cfg["crop"]


def make_lookup_model(case: LookupCase) -> LookupModel:
    """Inputs and callables of ``case``'s model (one map of random class ids, shared by its implementations)."""
    from spadenorm import SPADE
    from spadenorm.functional import label_conv
    from spadenorm.reference import OriginalSPADE

    kind, name = case.model.split(" ")
    gen = torch.Generator(device="cuda").manual_seed(0)
    autocast = _autocast(case.dtype)
    if kind == "generator":
        modules, classes, size = _lookup_generators(name)
    else:
        classes, size = LOOKUP_CLASSES, 256
    ids = torch.randint(0, classes, (case.batch, size, size), device="cuda", generator=gen)
    one_hot = F.one_hot(ids, classes).permute(0, 3, 1, 2).float().contiguous()
    if kind == "generator":
        out_shape: tuple[int, ...] = (case.batch, 3, size, size)
        inputs = {"original": one_hot, "spadenorm ids": ids}
        calls = {impl: functools.partial(_under, autocast, modules[impl], inputs[impl]) for impl in modules}
        params = {impl: tuple(m.parameters()) for impl, m in modules.items()}
    elif kind == "layer":
        c, h, w = LAYERS[name]
        torch.manual_seed(0)
        original = OriginalSPADE("batch", 3, c, classes).cuda()
        ours = SPADE(c, classes, norm="sync_batch", device="cuda")
        ours.load_state_dict(original.state_dict())
        fused = SPADE(c, classes, norm="sync_batch", fuse_gamma_beta=True, device="cuda")
        fused.load_state_dict(original.state_dict())
        x = torch.randn(case.batch, c, h, w, device="cuda", generator=gen, requires_grad=True)
        out_shape = tuple(x.shape)
        layers = {"original": original, "spadenorm map": ours, "spadenorm ids": ours, "spadenorm ids fused": fused}
        segmaps = {"original": one_hot, "spadenorm map": one_hot, "spadenorm ids": ids, "spadenorm ids fused": ids}
        calls = {impl: functools.partial(_under, autocast, layers[impl], x, segmaps[impl]) for impl in layers}
        params = {impl: (x, *layer.parameters()) for impl, layer in layers.items()}
    else:  # the first convolution alone: 151 classes -> 128 hidden channels, 3x3
        weight = (0.05 * torch.randn(128, classes, 3, 3, device="cuda", generator=gen)).requires_grad_(True)
        bias = torch.zeros(128, device="cuda", requires_grad=True)
        out_shape = (case.batch, 128, size, size)
        conv = functools.partial(F.conv2d, one_hot, weight, bias, padding=1)
        lookup = functools.partial(label_conv, ids, weight, bias)
        calls = {"original": functools.partial(_under, autocast, conv), "spadenorm ids": functools.partial(
            _under, autocast, lookup)}  # fmt: skip
        params = dict.fromkeys(calls, (weight, bias))
    dy = torch.randn(out_shape, device="cuda", dtype=DTYPES[case.dtype], generator=gen)
    return LookupModel(calls, params, dy)


def _under(context: Any, fn: Callable[..., Tensor], *args: Any) -> Tensor:
    with context:
        return fn(*args)


def lookup_model(case: LookupCase) -> LookupModel:
    """The model of ``case``, kept while the following cases use the same one."""
    key = (case.model, case.batch, case.dtype)
    cached = getattr(STATE, "lookup", None)
    if cached is None or cached[0] != key:
        STATE.lookup = None  # type: ignore[attr-defined]
        torch.cuda.empty_cache()
        STATE.lookup = (key, make_lookup_model(case))  # type: ignore[attr-defined]
    return STATE.lookup[1]  # type: ignore[attr-defined]


def run_lookup_case(benchmark: Any, case: LookupCase) -> None:
    """Measure ``case``: device time and op time as :func:`run_case`, peak memory, bytes saved for backward, and the
    output's relative error against the original formulation (:meth:`LookupModel.relative_errors`)."""
    from spadenorm.testing import saved_tensor_bytes

    started = time.perf_counter()
    model = lookup_model(case)
    call, params = model.calls[case.impl], model.params[case.impl]
    rel_err = model.relative_errors()[case.impl]
    with spadenorm.use_backend("torch"):
        saved = saved_tensor_bytes(call)
        prepare, run = make_step(call, params, model.dy, case.mode, {})
        torch.cuda.reset_peak_memory_stats()
        measure_start = time.perf_counter()
        device = timer().time(run, prepare=prepare, reps=REPS, warmup=WARMUP)

        def setup() -> tuple[tuple[Any], dict[str, Any]]:
            arg = prepare()
            timer().flush_and_sync()
            return (arg,), {}

        def op(arg: Any) -> None:
            run(arg)
            torch.cuda.synchronize()

        benchmark.group = case.row
        benchmark.pedantic(op, setup=setup, rounds=OP_ROUNDS, warmup_rounds=0, iterations=1)
    benchmark.extra_info.update(
        device="cuda",
        device_name=torch.cuda.get_device_name(),
        torch=torch.__version__,
        triton=_triton_version(),
        step=case.step,
        benchmark="label_conv_gpu",
        model=case.model,
        batch=case.batch,
        dtype=case.dtype,
        mode=case.mode,
        impl=case.impl,
        lookup_device_ms=device.as_dict(),
        peak_allocated_bytes=torch.cuda.max_memory_allocated(),
        saved_bytes=saved,
        rel_err_vs_original=rel_err,
        prepare_s=measure_start - started,
        measure_s=time.perf_counter() - measure_start,
    )


@functools.cache
def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return str(triton.__version__)


@pytest.fixture(autouse=True)
def _time_budget() -> None:
    """Skip cases that would start after ``SPADENORM_BENCH_DEADLINE``: a step that runs out of time ends cleanly."""
    deadline = os.environ.get("SPADENORM_BENCH_DEADLINE")
    if deadline and time.time() > float(deadline):
        pytest.skip("the time budget of this step is spent")


def _ids(cases: Sequence[Case | LookupCase]) -> list[str]:
    return [case.id for case in cases]


@pytest.mark.parametrize("case", CORE, ids=_ids(CORE))
def test_core(benchmark: Any, case: Case) -> None:
    run_case(benchmark, case)


@pytest.mark.parametrize("case", COMPILED, ids=_ids(COMPILED))
def test_compiled(benchmark: Any, case: Case) -> None:
    run_case(benchmark, case)


@pytest.mark.parametrize("case", PATH_CASES, ids=_ids(PATH_CASES))
def test_paths(benchmark: Any, case: Case) -> None:
    run_case(benchmark, case)


@pytest.mark.parametrize("case", KINDS, ids=_ids(KINDS))
def test_kinds(benchmark: Any, case: Case) -> None:
    run_case(benchmark, case)


@pytest.mark.parametrize("case", CLADE, ids=_ids(CLADE))
def test_clade(benchmark: Any, case: Case) -> None:
    run_case(benchmark, case)


@pytest.mark.parametrize("case", LABEL_CONV, ids=_ids(LABEL_CONV))
def test_label_conv(benchmark: Any, case: LookupCase) -> None:
    run_lookup_case(benchmark, case)
