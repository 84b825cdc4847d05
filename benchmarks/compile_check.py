"""Compile every Triton kernel variant that spadenorm launches, for an NVIDIA GPU of a given compute capability,
on a machine without one, and check the backward rows' occupancy.

The public API runs on CPU tensors while a stand-in driver reports the target GPU (:mod:`benchmarks.variants`): every
call is planned as on a 132-SM GPU of that capability and every kernel launch becomes Triton's own ``warmup``, so
each variant is specialized exactly as a launch on that GPU would specialize it (argument dtypes, 16-byte
divisibility, constexpr tile sizes and kinds) and compiled down to a cubin by the ``ptxas`` that ships with Triton,
but nothing runs. The calls cover every statistics path (row strategies, split-row, given statistics), every
modulation kind (spatial, per (n, c), per channel, absent, class tables), with and without the second modulation
(scale and shift), forward and backward, fp32/bf16, NCHW and channels_last, at SPADE generator layer shapes and at
small odd shapes.

It reports, per kernel, the number of distinct variants and the largest register count, spill size (``ptxas -v``),
shared memory and the resulting programs per SM among them, and lists every variant that spills. Then the resident
backward rows of the generator's up_0 and up_1 layers (8 x 1024 x 32 x 32 and 8 x 512 x 64 x 64, spatial gamma and
beta, fp32 and bf16), with their registers, spills and programs per SM. It exits with status 1 when a variant fails
to compile, when a variant spills more than :data:`SPILL_LIMIT` bytes per thread, or when one of those backward rows
spills or runs fewer than :data:`BACKWARD_PROGRAMS_PER_SM` programs per SM. ``--write-occupancy`` writes the
variant families' registers and shared memory, which size spadenorm's grids (:mod:`spadenorm.backends.triton.
occupancy`). This proves that the kernels build for the target with the installed Triton; it says nothing about their
speed or their results on a GPU.

Usage: ``python benchmarks/compile_check.py [--capability 90] [--json PATH] [--quick] [--write-occupancy [PATH]]``
(several minutes on 2 cores; ``--quick`` compiles the variants of two shapes and the backward rows).
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.pop("TRITON_INTERPRET", None)  # the kernels must be defined for compilation, not for the interpreter

import torch
import triton
from triton.runtime import driver

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, also when spadenorm is not installed
from benchmarks.stub_driver import CompileOnlyDriver
from benchmarks.variants import KERNELS, compiling
from spadenorm.backends.triton import occupancy
from spadenorm.backends.triton.plan import overridden
from spadenorm.functional import class_modulated_norm, modulated_norm

SPILL_LIMIT = 32  # bytes per thread, stores or loads
BACKWARD_PROGRAMS_PER_SM = 2  # the resident backward rows at the generator's shapes: load, reduce and store overlap
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
ROW_STRATEGIES = ("resident", "swept", "persistent")
BACKWARD_ROWS = {"up_0": (8, 1024, 32, 32), "up_1": (8, 512, 64, 64)}
DTYPES = (torch.float32, torch.bfloat16)
GPU = occupancy.Device(132, occupancy.HOPPER)
OCCUPANCY_TABLE = Path(__file__).resolve().parents[1] / "spadenorm" / "backends" / "triton" / "_occupancy_sm90.py"
# Kernels whose grids are sized from their occupancy (the persistent row kernels, the reduction kernels).
SIZED = ("_row_fwd_kernel", "_row_bwd_kernel", "_stats_partial_kernel", "_backward_sums_kernel",
         "_class_table_grad_kernel")  # fmt: skip


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


def _statistics(x: torch.Tensor) -> Iterator[tuple[dict[str, Any], dict[str, Any], bool]]:
    """``(keyword arguments, launch overrides, every modulation kind)`` of every statistics path for x: per-sample
    norms on the rule's path and the split-row path (every modulation kind) and forced onto each row strategy
    (spatial and absent modulation), batch norms with and without running estimates, eval mode, none."""
    c = x.shape[1]
    per_sample = [{"norm": "instance"}, {"norm": "layer"}]
    if c % 32 == 0 and c > 32:
        per_sample.append({"norm": "group", "num_groups": 32})
    for kwargs in per_sample:
        yield kwargs, {}, True
        yield kwargs, {"row_kernels": False}, True
        for strategy in ROW_STRATEGIES:
            yield kwargs, {"row_kernels": True, "row_strategy": strategy}, False
    running = {"running_mean": x.new_zeros(c, dtype=torch.float32), "running_var": x.new_ones(c, dtype=torch.float32)}
    yield {"norm": "batch"}, {}, True
    yield {"norm": "batch", **running}, {}, False
    yield (
        {"norm": "batch", **running, "momentum": None, "num_batches_tracked": torch.zeros((), dtype=torch.long)},
        {},
        False,
    )
    yield {"norm": "batch", **running, "training": False}, {}, True
    yield {"norm": "none"}, {}, False


def _forward_backward(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], inputs: list[torch.Tensor | None],
                      overrides: dict[str, Any]) -> None:  # fmt: skip
    """``fn(*args, **kwargs)`` and the backward of every input that needs a gradient, under ``overrides``."""
    with overridden(**overrides):
        y = fn(*args, **kwargs)
        needs = [t for t in inputs if t is not None and t.requires_grad]
        if needs:
            torch.autograd.grad(y, needs, torch.empty_like(y))


def call_every_path(x: torch.Tensor) -> None:
    """Call the public API the way models do, on every statistics path, modulation kind and second modulation
    (none, or a per-(n, c) scale and shift), forward and backward (gradients for every input; with spatial gamma and
    beta on the rule's path, also for x alone)."""
    n, c = x.shape[:2]
    for second in (None, x.new_empty((n, c))):
        for kind, t in _modulations(x).items():
            for stats, overrides, every_kind in _statistics(x):
                if not every_kind and kind not in ("spatial", "absent"):
                    continue
                for grads in ("all", "x") if kind == "spatial" and not overrides else ("all",):
                    leaves = [x.detach().requires_grad_(True)]
                    leaves += [
                        None if v is None else v.detach().requires_grad_(grads == "all") for v in (t, t, second, second)
                    ]
                    xx, g, b, s, sh = leaves
                    kwargs = {"scale": s, "shift": sh, **stats}
                    _forward_backward(modulated_norm, (xx, g, b), kwargs, leaves, overrides)
        for classes in (19, 151):
            labels = torch.zeros((n, *x.shape[2:]), dtype=torch.long)
            tables = [x.new_empty((classes, c)).requires_grad_(True) for _ in range(2)]
            xx = x.detach().requires_grad_(True)
            s = None if second is None else second.detach().requires_grad_(True)
            for norm, overrides in (("instance", {}), ("instance", {"row_kernels": False}), ("batch", {})):
                kwargs = {"norm": norm, "scale": s, "shift": s}
                _forward_backward(class_modulated_norm, (xx, labels, *tables), kwargs, [xx, *tables, s], overrides)


def backward_rows(capability: int) -> list[dict[str, Any]]:
    """The resident backward row variants of SPADE's up_0 and up_1 layers (spatial gamma and beta, instance
    statistics, every input needing a gradient), with their registers, spills and programs per SM."""
    rows: list[dict[str, Any]] = []

    def keep(name: str, constexprs: dict[str, Any], compiled: Any) -> None:
        if name == "_row_bwd_kernel":
            rows.append({"constexprs": constexprs, "compiled": compiled})

    out = []
    for layer, shape in BACKWARD_ROWS.items():
        for dtype in DTYPES:
            rows.clear()
            failures: list[str] = []
            with compiling(GPU, keep, failures):
                x, gamma, beta = (torch.empty(shape, dtype=dtype).requires_grad_(True) for _ in range(3))
                _forward_backward(modulated_norm, (x, gamma, beta), {}, [x, gamma, beta], {})
            assert not failures, failures
            assert len(rows) == 1, len(rows)
            compiled, constexprs = rows[0]["compiled"], rows[0]["constexprs"]
            report = ptxas_report(compiled.asm["ptx"], capability)
            shared, warps = compiled.metadata.shared, compiled.metadata.num_warps
            per_sm = occupancy.programs_per_sm(report["registers"], shared, warps)
            out.append({"layer": layer, "shape": shape, "dtype": str(dtype).removeprefix("torch."),
                        "tile": (constexprs["BLOCK_C"], constexprs["BLOCK_S"]), "num_warps": warps, **report,
                        "shared_bytes": shared, "programs_per_sm": per_sm})  # fmt: skip
    return out


def occupancy_families(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], tuple[int, int]]:
    """The most registers and shared memory per variant family (kernel, element size, warps, tile, tables, need_z)
    of the kernels whose grids are sized from them; row kernels only where persistent."""
    families: dict[tuple[Any, ...], tuple[int, int]] = {}
    for r in rows:
        constexprs = r["constexprs"]
        if r["kernel"] not in SIZED or constexprs.get("STRATEGY", 2) != 2:
            continue
        tables = r["kernel"] == "_class_table_grad_kernel" or 2 in (constexprs.get("GAMMA"), constexprs.get("BETA"))
        key = occupancy.family(r["kernel"], r["element_size"], r["num_warps"], constexprs["BLOCK_C"],
                               constexprs["BLOCK_S"], tables, bool(constexprs.get("NEED_Z", False)))  # fmt: skip
        registers, shared = families.get(key, (0, 0))
        families[key] = (max(registers, r["registers"]), max(shared, r["shared_bytes"]))
    return dict(sorted(families.items()))


def write_occupancy(families: dict[tuple[Any, ...], tuple[int, int]], path: Path, version: str) -> None:
    head, _ = path.read_text().split("FAMILIES:")
    lines = [f"    {key!r}: {value!r}," for key, value in families.items()]
    body = "\n".join([f"# Triton {version}, sm_90, benchmarks/compile_check.py --write-occupancy", *lines])
    path.write_text(
        f"{head}FAMILIES: dict[tuple[str, int, int, int, int, bool, bool], tuple[int, int]] = {{\n{body}\n}}\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capability", type=int, default=90, help="compute capability as an int (90: H100/H200)")
    parser.add_argument("--json", help="write the per-variant report here")
    parser.add_argument("--quick", action="store_true", help=f"only the shapes {QUICK_SHAPES} (CI)")
    parser.add_argument("--write-occupancy", nargs="?", const=str(OCCUPANCY_TABLE), metavar="PATH",
                        help="write the variant families' registers and shared memory to this module")  # fmt: skip
    args = parser.parse_args()
    driver.set_active(CompileOnlyDriver(args.capability))
    compiled: dict[str, dict[str, Any]] = {}
    failures: list[str] = []

    def record(name: str, constexprs: dict[str, Any], kernel: Any) -> None:
        if kernel.hash not in compiled:
            compiled[kernel.hash] = {"kernel": name, "constexprs": constexprs, "compiled": kernel}

    start = time.perf_counter()
    with compiling(GPU, record, failures):
        for shape in QUICK_SHAPES if args.quick else SHAPES:
            for dtype in DTYPES:
                x = torch.empty(shape, dtype=dtype)
                call_every_path(x)
                call_every_path(x.to(memory_format=torch.channels_last))
    rows = []
    for entry in compiled.values():
        kernel = entry.pop("compiled")
        report = ptxas_report(kernel.asm["ptx"], args.capability)
        shared, warps = kernel.metadata.shared, kernel.metadata.num_warps
        per_sm = occupancy.programs_per_sm(report["registers"], shared, warps)
        element_size = _element_size(kernel)
        rows.append({**entry, **report, "shared_bytes": shared, "num_warps": warps, "programs_per_sm": per_sm,
                     "element_size": element_size})  # fmt: skip
    rows.sort(key=lambda r: (r["kernel"], -r["registers"]))
    spilling = [r for r in rows if r["spill_stores"] or r["spill_loads"]]
    over = [r for r in spilling if max(r["spill_stores"], r["spill_loads"]) > SPILL_LIMIT]
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
        print(f"SPILLS ({'over the limit' if row in over else 'within the limit'})", row)
    backward = backward_rows(args.capability)
    print("\nResident backward rows of the generator (_row_bwd_kernel, spatial gamma and beta, instance statistics):")
    print("| layer | N x C x H x W | dtype | tile | warps | registers | spill bytes | shared memory bytes "
          "| programs per SM |")  # fmt: skip
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    weak = []
    for r in backward:
        spill = r["spill_stores"] + r["spill_loads"]
        print(
            f"| {r['layer']} | {'x'.join(map(str, r['shape']))} | {r['dtype']} | {r['tile'][0]} x {r['tile'][1]} "
            f"| {r['num_warps']} | {r['registers']} | {spill} | {r['shared_bytes']} | {r['programs_per_sm']} |"
        )
        if spill or r["programs_per_sm"] < BACKWARD_PROGRAMS_PER_SM:
            weak.append(r)
    for r in weak:
        print(f"BACKWARD ROW BELOW {BACKWARD_PROGRAMS_PER_SM} PROGRAMS PER SM OR SPILLING", r)
    if args.json:
        report_json = {"triton": triton.__version__, "variants": rows, "backward_rows": backward}
        Path(args.json).write_text(json.dumps(report_json, indent=1, default=str))
    if args.write_occupancy:
        write_occupancy(occupancy_families(rows), Path(args.write_occupancy), triton.__version__)
    missing = [name for name in KERNELS if not any(r["kernel"] == name for r in rows)]
    for name in missing:
        print("NOT COMPILED", name)
    return 1 if failures or missing or over or weak else 0


def _element_size(kernel: Any) -> int:
    """Bytes per element of x in a compiled variant: from the first pointer argument's type in its signature."""
    signature = kernel.src.signature
    first = next(iter(signature.values()))
    return {"*fp32": 4, "*bf16": 2, "*fp16": 2}.get(first, 4)


if __name__ == "__main__":
    sys.exit(main())
