"""Compile every Triton kernel variant that spadenorm launches, for an NVIDIA GPU of a given compute capability,
on a machine without one.

The launchers of ``spadenorm.backends.triton.launch`` run on CPU tensors while a stand-in driver reports the target
GPU, and every kernel launch is replaced by Triton's own ``warmup``: each variant is specialized exactly as a launch
on that GPU would specialize it (argument dtypes, 16-byte divisibility, constexpr tile sizes and kinds) and compiled
down to a cubin by the ``ptxas`` that ships with Triton, but nothing runs. The cases cover every statistics path
(row-persistent and two-phase), every modulation kind (spatial, per (n, c), per channel, absent, class tables),
with and without the second modulation (scale and shift), fp32/bf16, NCHW and channels_last, at SPADE generator
layer shapes and at small odd shapes.

For each kernel it reports the number of distinct variants and the largest register count, spill size (``ptxas
-v``), shared memory and the resulting programs per SM among them, lists every variant that spills, and exits with
status 1 when a variant fails to compile or when a hot kernel (every kernel but the previous, selectable CLADE
table-gradient kernel) spills more than :data:`SPILL_LIMIT` bytes per thread (a few registers kept in local memory
outside the tile values cost next to nothing; a spilled tile costs bandwidth). This proves that the kernels build
for the target with the installed Triton; it says nothing about their speed or their results on a GPU.

Usage: ``python benchmarks/compile_check.py [--capability 90] [--json PATH] [--quick]`` (a few minutes with a
recent Triton on 2 cores; ``--quick`` compiles the variants of two shapes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.pop("TRITON_INTERPRET", None)  # the kernels must be defined for compilation, not for the interpreter

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.driver import DriverBase
from triton.runtime import driver

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, also when spadenorm is not installed
from spadenorm.backends.triton import launch, occupancy
from spadenorm.backends.triton.layout import ROW_STRATEGIES

KERNELS = (
    "_stats_partial_kernel",
    "_finalize_stats_kernel",
    "_row_fwd_kernel",
    "_modulate_fwd_kernel",
    "_backward_sums_kernel",
    "_backward_dx_kernel",
    "_row_bwd_kernel",
    "_class_table_grad_chunked_kernel",
    "_class_table_grad_kernel",
)
# Kept selectable until a GPU has compared it with its replacement; known to spill, so reported but not failed on.
PREVIOUS_KERNELS = ("_class_table_grad_kernel",)
SPILL_LIMIT = 32  # bytes per thread, stores or loads
# (N, C, H, W): SPADE generator layer inputs (ADE20K up_2 at batch 8, head_0 at batch 1, the narrow 256x256 layer,
# up_1 at batch 8: a 4096-position resident row), the diffusion block of the benchmarks, and small odd shapes (sizes
# that are not multiples of 16 specialize differently).
SHAPES = [
    (8, 256, 128, 128),
    (3, 6, 5, 7),
    (1, 1024, 8, 8),
    (1, 64, 256, 256),
    (8, 512, 64, 64),
    (2, 256, 64, 64),
    (2, 70, 9, 13),
]
QUICK_SHAPES = SHAPES[:2]
DTYPES = (torch.float32, torch.bfloat16)
GPU_SMS = 132


class CompileOnlyDriver(DriverBase):
    """A driver that reports a CUDA GPU of the given compute capability and launches nothing."""

    def __init__(self, capability: int) -> None:
        super().__init__()
        self.capability = capability

    @classmethod
    def is_active(cls) -> bool:
        return True

    def map_python_to_cpp_type(self, ty: str) -> str:
        return ty

    def get_current_target(self) -> GPUTarget:
        return GPUTarget("cuda", self.capability, 32)

    def get_active_torch_device(self) -> torch.device:
        return torch.device("cpu")

    def get_benchmarker(self) -> Any:
        raise NotImplementedError("nothing runs under the compile-only driver")

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_device_capability(self, device: int | None = None) -> tuple[int, int]:
        return divmod(self.capability, 10)


class CompileOnly:
    """Stands in for a kernel in ``launch``: ``kernel[grid](...)`` compiles the variant and records it."""

    def __init__(self, kernel: Any, compiled: dict[str, dict[str, Any]], failures: list[str]) -> None:
        self.kernel = kernel
        self.compiled = compiled
        self.failures = failures

    def __getitem__(self, grid: tuple[int, ...]) -> Any:
        def compile_variant(*args: Any, **kwargs: Any) -> None:
            name = self.kernel.fn.__name__
            try:
                kernel = self.kernel.run(*args, grid=grid, warmup=True, **kwargs)
            except Exception as error:  # a variant that does not build: report it and go on
                self.failures.append(f"{name} {kwargs}: {type(error).__name__}: {str(error).splitlines()[0]}")
                return
            if kernel.hash not in self.compiled:
                constexprs = {k: v for k, v in kwargs.items() if k.isupper() or k == "num_warps"}
                self.compiled[kernel.hash] = {"kernel": name, "constexprs": constexprs, "compiled": kernel}

        return compile_variant


def ptxas_report(ptx: str, capability: int) -> dict[str, int]:
    """Registers and spill bytes of one kernel, from ``ptxas -v`` on its PTX (the ptxas Triton itself uses)."""
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = get_ptxas(capability).path
    arch = re.search(r"^\.target\s+(\w+)", ptx, re.MULTILINE)
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    try:
        result = subprocess.run(
            [str(ptxas), "-v", "--gpu-name", arch.group(1) if arch else "sm_90a", f.name, "-o", os.devnull],
            capture_output=True,
            text=True,
        )
    finally:
        os.unlink(f.name)
    text = result.stderr + result.stdout
    if result.returncode != 0:
        raise RuntimeError(f"ptxas failed on a PTX that Triton assembled itself: {text.strip()[:500]}")
    registers = re.search(r"Used (\d+) registers", text)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    return {
        "registers": int(registers.group(1)) if registers else -1,
        "spill_stores": int(spills.group(1)) if spills else 0,
        "spill_loads": int(spills.group(2)) if spills else 0,
    }


def _modulations(x: torch.Tensor) -> dict[str, torch.Tensor | None]:
    n, c = x.shape[:2]
    return {
        "spatial": torch.empty_like(x),
        "per_sample_channel": x.new_empty((n, c, 1, 1)),
        "per_channel": x.new_empty((1, c, 1, 1)),
        "absent": None,
    }


def launch_every_path(x: torch.Tensor) -> None:
    """Call every launcher the way the autograd layer does, for each modulation kind, statistics path, row strategy
    and second modulation (none, or a per-(n, c) scale and shift)."""
    n, c = x.shape[:2]
    span = launch.reduction_span(x)
    per_sample = x.new_empty((n, c), dtype=torch.float32)
    per_channel = x.new_empty((1, c), dtype=torch.float32)
    dy = torch.empty_like(x)
    moments = launch.partial_stats(x, span)
    running = x.new_empty(c, dtype=torch.float32)
    launch.finalize_stats(*moments, span, x[0, 0].numel(), c, True, 1e-5, running, running, 0.1, None)
    launch.finalize_stats(*moments, span, x[0, 0].numel(), c, True, 1e-5, running, running, 0.0, running[0])
    groups = [c] + ([32] if c % 32 == 0 and c > 32 else [])
    for g in groups[1:]:
        launch.finalize_stats(*moments, span, x[0, 0].numel(), g, False, 1e-5, None, None, 0.0, None)
    partials = launch.backward_sums(dy, x, None, None, None, None, per_sample, per_sample, span, False)
    for second in (None, x.new_empty((n, c))):
        for kind, t in _modulations(x).items():
            spatial = kind == "spatial"
            for stats in (per_sample, per_channel):
                launch.modulate(x, t, t, None, second, second, stats, stats)
                launch.backward_sums(dy, x, t, t, None, second, stats, stats, span, second is not None)
                write = (True, spatial, spatial and second is not None)
                launch.backward_dx(dy, x, t, t, None, second, stats, stats, stats, stats, None, 0, False, 1, *write)
                launch.backward_dx(dy, x, t, t, None, second, stats, stats, None, None, None, 0, False, 1, *write)
                for batch in (True, False):
                    launch.backward_dx(dy, x, t, t, None, second, stats, stats, None, None, partials, 1, batch, 1,
                                       *write)  # fmt: skip
            for g in groups:
                for strategy in ROW_STRATEGIES:
                    with launch.overridden(row_strategy=strategy):
                        if launch.row_plan(x, g) is None:
                            continue
                        launch.row_forward(x, t, t, None, second, second, g, 1e-5)
                        launch.row_backward(dy, x, t, t, None, second, per_sample, per_sample, g, True, spatial,
                                            spatial and second is not None, second is not None)  # fmt: skip
        for classes in (19, 151):
            labels = torch.zeros((n, *x.shape[2:]), dtype=torch.long)
            table = x.new_empty((classes, c))
            launch.modulate(x, table, table, labels, second, second, per_sample, per_sample)
            launch.backward_dx(dy, x, table, table, labels, second, per_sample, per_sample, per_sample, per_sample,
                               None, 0, False, 1, True, False, False)  # fmt: skip
            launch.row_forward(x, table, table, labels, second, second, c, 1e-5)
            launch.row_backward(dy, x, table, table, labels, second, per_sample, per_sample, c, True, False, False,
                                second is not None)  # fmt: skip
            for table_grad in ("chunked", "dense"):
                with launch.overridden(table_grad=table_grad):
                    launch.class_table_grads(dy, x, labels, second, per_sample, per_sample, classes, span)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capability", type=int, default=90, help="compute capability as an int (90: H100/H200)")
    parser.add_argument("--json", help="write the per-variant report here")
    parser.add_argument("--quick", action="store_true", help=f"only the shapes {QUICK_SHAPES} (CI)")
    args = parser.parse_args()
    driver.set_active(CompileOnlyDriver(args.capability))
    # Plan launches as on an H100/H200 (132 SMs, default occupancy), not as for the CPU tensors used here.
    launch._device_programs = lambda device: 2 * GPU_SMS
    occupancy.resident_programs = lambda kernel, variant, device: GPU_SMS * occupancy.DEFAULT_PROGRAMS_PER_SM
    compiled: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for name in KERNELS:
        setattr(launch, name, CompileOnly(getattr(launch, name), compiled, failures))
    start = time.perf_counter()
    for shape in QUICK_SHAPES if args.quick else SHAPES:
        for dtype in DTYPES:
            x = torch.empty(shape, dtype=dtype)
            launch_every_path(x)
            launch_every_path(x.to(memory_format=torch.channels_last))
    rows = []
    for entry in compiled.values():
        kernel = entry.pop("compiled")
        report = ptxas_report(kernel.asm["ptx"], args.capability)
        shared, warps = kernel.metadata.shared, kernel.metadata.num_warps
        per_sm = occupancy.programs_per_sm(report["registers"], shared, warps)
        rows.append({**entry, **report, "shared_bytes": shared, "num_warps": warps, "programs_per_sm": per_sm})
    rows.sort(key=lambda r: (r["kernel"], -r["registers"]))
    spilling = [r for r in rows if r["spill_stores"] or r["spill_loads"]]
    hot_spills = [r for r in spilling if r["kernel"] not in PREVIOUS_KERNELS
                  and max(r["spill_stores"], r["spill_loads"]) > SPILL_LIMIT]  # fmt: skip
    print(f"triton {triton.__version__}, torch {torch.__version__}, target cuda sm_{args.capability}")
    print(f"{len(rows)} distinct kernel variants compiled in {time.perf_counter() - start:.0f} s")
    print("| kernel | variants | registers (max) | spill bytes (max) | shared memory bytes (max) "
          "| programs per SM (min) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name in KERNELS:
        mine = [r for r in rows if r["kernel"] == name]
        if mine:
            spill = max(r["spill_stores"] + r["spill_loads"] for r in mine)
            print(f"| {name} | {len(mine)} | {max(r['registers'] for r in mine)} | {spill} | "
                  f"{max(r['shared_bytes'] for r in mine)} | {min(r['programs_per_sm'] for r in mine)} |")  # fmt: skip
    for failure in failures:
        print("FAILED", failure)
    for row in spilling:
        verdict = "over the limit" if row in hot_spills else (
            "previous kernel, not failed on" if row["kernel"] in PREVIOUS_KERNELS else "within the limit")  # fmt: skip
        print(f"SPILLS ({verdict})", row)
    if args.json:
        Path(args.json).write_text(json.dumps({"triton": triton.__version__, "variants": rows}, indent=1, default=str))
    missing = [name for name in KERNELS if not any(r["kernel"] == name for r in rows)]
    for name in missing:
        print("NOT COMPILED", name)
    return 1 if failures or missing or hot_spills else 0


if __name__ == "__main__":
    sys.exit(main())
