"""A model of every launch the Triton backend makes at the SPADE generator's shapes: bytes moved per element,
programs, waves, and the fraction of copy bandwidth each launch should reach on an H100/H200.

Nothing here runs a kernel. The path, tiles and grids come from the launch plan itself
(``spadenorm.backends.triton.plan.make_plan``) for a device of ``--sms`` SMs, forward and backward each with its
own plan; the programs each SM holds come, per kernel and variant (kernel, strategy, tile, warps, element size), from
a compile report (``benchmarks/compile_check.py --json``: registers and shared memory of every compiled variant, for
the Triton of the GPU), the fewest among the variants with spatial gamma and beta, or, without one, from
:data:`DEFAULT_PROGRAMS_PER_SM`. The memory side is a model with stated assumptions:

* Bytes per element of x (``s`` bytes each): forward reads x, gamma, beta and writes y (4, the minimum); backward
  reads dy, x, gamma and writes dx, dgamma (5; dbeta is dy itself). A row kernel that sweeps its row twice re-reads
  x (forward) or dy, x, gamma (backward) in the second sweep; the fraction ``h`` of that re-read served by L2 is
  ``min(1, L2 / working set)``, with the working set the rows in flight (resident programs x row bytes) times the
  tensors they keep touching (2 forward: x and the modulation it meets in the second sweep; 3 backward). The
  split-row path reads x once for the statistics and once to modulate (5 forward), and dy, x, gamma twice in the
  backward (8), except that x stays in L2 between the two launches when it fits in half of it.
* Time: bytes / copy bandwidth, divided by the wave efficiency (programs over whole waves of the device's
  capacity; a persistent grid's rows over its programs) and by a latency factor (loads in flight per SM below
  ``--in-flight-kb``, by Little's law about 40 KB for HBM3e at 1.2 us: a resident row's whole tile, a swept or
  persistent row's pipeline of one tile ahead of each tensor its first sweep reads: x forward, dy, x and gamma
  backward), plus ``--launch-us`` per launch.
* Expected fraction of copy bandwidth: the ideal bytes (4 or 5 per element) over that time.

The first GPU run of ``benchmarks/gpu_suite.sh`` measures what this predicts; ``docs/kernels.md`` shows both.

Usage: ``python benchmarks/launch_model.py [--compile-report cc.json] [--sms 132] [--l2-mb 50] [--write
docs/kernels.md]`` (``--write`` replaces the table between the ``launch-model`` markers of that page).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TRITON_INTERPRET", "1")  # importing the plan module needs no GPU
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, also when spadenorm is not installed
from benchmarks.shapes import ADE20K_256
from spadenorm.backends.triton import occupancy
from spadenorm.backends.triton.kernels.common import Strategy
from spadenorm.backends.triton.layout import Strides, cdiv
from spadenorm.backends.triton.plan import CallPlan, Launch, Signature, make_plan

DEFAULT_PROGRAMS_PER_SM = {"resident": 4, "swept": 4, "persistent": 2, "split": 4}
FMIDDLE = [("up_0.norm_1", 512, 32, 32), ("up_1.norm_1", 256, 64, 64), ("up_2.norm_1", 128, 128, 128),
           ("up_3.norm_1", 64, 256, 256)]  # fmt: skip
DTYPES = {"fp32": 4, "bf16": 2}
NAMES = {Strategy.RESIDENT: "resident", Strategy.SWEPT: "swept", Strategy.PERSISTENT: "persistent"}
VariantKey = tuple[str, str, int, int, int]  # kernel, strategy name, element size, warps, tile elements


@dataclass
class Device:
    """What the model assumes of the GPU; ``programs_per_sm`` per variant (:func:`variant_key`), from a report."""

    sms: int = 132
    l2_bytes: float = 50e6
    in_flight_bytes: float = 40e3
    launch_s: float = 3e-6
    programs_per_sm: dict[VariantKey, int] | None = None

    def per_sm(self, key: VariantKey) -> int:
        found = (self.programs_per_sm or {}).get(key)
        return found if found is not None else DEFAULT_PROGRAMS_PER_SM[key[1]]


def variant_key(kernel: str, strategy: str, element_size: int, launch: Launch) -> VariantKey:
    return kernel, strategy, element_size, launch.num_warps, launch.block_c * launch.block_s


@dataclass
class Prediction:
    layer: str
    shape: tuple[int, int, int, int]
    dtype: str
    norm: str
    path: str
    path_backward: str
    programs: int
    programs_backward: int
    waves: float
    bytes_forward: float
    bytes_backward: float
    launches_forward: int
    launches_backward: int
    fraction_forward: float
    fraction_backward: float


def _wave_efficiency(programs: int, capacity: int) -> float:
    """Work over the device's slots in whole waves: under one wave, the share of slots used; above, the tail's loss."""
    return programs / (math.ceil(programs / capacity) * capacity)


def _latency_factor(device: Device, per_sm_programs: int, bytes_in_flight: float) -> float:
    return min(1.0, per_sm_programs * bytes_in_flight / device.in_flight_bytes)


def _hit(device: Device, rows_in_flight: int, row_bytes: float, tensors: int) -> float:
    return min(1.0, device.l2_bytes / max(1.0, rows_in_flight * row_bytes * tensors))


def _fraction(ideal: float, moved: float, efficiency: float, launches: int, size: float, device: Device) -> float:
    """Ideal bytes over the modelled time, as a fraction of copy bandwidth (the bandwidth itself cancels out for
    the memory part; the launch term needs it: taken as 4.3 TB/s)."""
    bandwidth = 4.3e12
    seconds = moved * size / bandwidth / efficiency + launches * device.launch_s
    return ideal * size / bandwidth / seconds


def _row(launch: Launch, shape: tuple[int, int, int, int], elem: int, device: Device, backward: bool) -> tuple[
        float, float, int]:  # fmt: skip
    """(bytes per element, efficiency, programs) of a row launch, forward or backward."""
    n, c, h, w = shape
    s = h * w
    strategy = NAMES[Strategy(launch.strategy)]
    kernel = "_row_bwd_kernel" if backward else "_row_fwd_kernel"
    per_sm = device.per_sm(variant_key(kernel, strategy, elem, launch))
    capacity = device.sms * per_sm
    rows = n * cdiv(c, launch.row_channels)
    if launch.strategy == Strategy.PERSISTENT:
        efficiency = rows / (math.ceil(rows / launch.grid0) * launch.grid0) * min(1.0, launch.grid0 / capacity)
    else:
        efficiency = _wave_efficiency(launch.grid0, capacity)
    tile_bytes = launch.block_c * launch.block_s * elem
    ideal = 5.0 if backward else 4.0
    if launch.strategy == Strategy.RESIDENT:
        moved, in_flight = ideal, tile_bytes * 3
    else:
        row_bytes = launch.row_channels * s * elem
        tensors = 3 if backward else 2
        moved = ideal + (tensors if backward else 1) * (1 - _hit(device, min(launch.grid0, capacity), row_bytes,
                                                                  tensors))  # fmt: skip
        in_flight = tile_bytes * (3 if backward else 1)  # 2 stages: one tile ahead of each tensor of the sweep
    return moved, max(1e-3, min(efficiency, 1.0) * _latency_factor(device, per_sm, in_flight)), launch.grid0


def _split(launch: Launch, size: float, elem: int, device: Device, backward: bool) -> tuple[float, float, int]:
    """(bytes per element, efficiency, programs) of the split-row path's reduction launch."""
    kernel = "_backward_sums_kernel" if backward else "_stats_partial_kernel"
    per_sm = device.per_sm(variant_key(kernel, "split", elem, launch))
    programs = launch.grid0 * launch.grid1 * launch.grid2
    efficiency = _wave_efficiency(programs, device.sms * per_sm)
    latency = _latency_factor(device, per_sm, launch.block_c * launch.block_s * elem * 2)
    if backward:
        moved = 8.0 - (3.0 if 3 * size <= device.l2_bytes / 2 else 0.0)
    else:
        moved = 5.0 - (1.0 if size <= device.l2_bytes / 2 else 0.0)
    return moved, max(1e-3, efficiency * latency), programs


def predict(layer: str, shape: tuple[int, int, int, int], dtype: str, norm: str, device: Device) -> Prediction:
    """The plan's paths for this case, forward and backward, and their modelled bytes and bandwidth."""
    n, c, h, w = shape
    elem = DTYPES[dtype]
    size = n * c * h * w * elem
    groups = None if norm == "batch" else (c if norm == "instance" else 32)
    sig = Signature(n, c, h * w, Strides(c * h * w, h * w, 1), elem, groups, True, False, False)
    call: CallPlan = make_plan(sig, occupancy.Device(device.sms, occupancy.HOPPER))
    results = []
    for backward, strategy, launch, launches in (
        (False, call.strategy, call.forward[0], len(call.forward)),
        (True, call.backward_strategy, call.backward[0], len(call.backward)),
    ):
        if strategy in NAMES:
            moved, efficiency, programs = _row(launch, shape, elem, device, backward)
            path = NAMES[strategy]
        else:
            moved, efficiency, programs = _split(launch, size, elem, device, backward)
            path = "split-row"
        ideal = 5.0 if backward else 4.0
        results.append((path, programs, moved, launches, _fraction(ideal, moved, efficiency, launches, size, device)))
    (path, programs, forward, launches_f, fraction_f), (path_b, programs_b, backward, launches_b, fraction_b) = results
    capacity = device.sms * device.per_sm(variant_key("_row_fwd_kernel", path, elem, call.forward[0])) if (
        path in DEFAULT_PROGRAMS_PER_SM) else device.sms  # fmt: skip
    return Prediction(layer, shape, dtype, norm, path, path_b, programs, programs_b, programs / capacity, forward,
                      backward, launches_f, launches_b, fraction_f, fraction_b)  # fmt: skip


def programs_per_sm_from_report(path: str) -> dict[VariantKey, int]:
    """Programs per SM of each variant the model describes, from a ``compile_check.py --json`` report: the fewest
    among the variants of a kernel with the same strategy, tile, warps and element size that have a spatial (or no)
    gamma, no scale and, for the row kernels, instance statistics."""
    variants: list[dict[str, Any]] = json.loads(Path(path).read_text())["variants"]
    out: dict[VariantKey, int] = {}
    for v in variants:
        constexprs = v["constexprs"]
        if constexprs.get("GAMMA", 1) != 1 or constexprs.get("NEED_Z") or not constexprs.get("PER_CHANNEL", True):
            continue
        if v["kernel"] in ("_row_fwd_kernel", "_row_bwd_kernel"):
            strategy = NAMES[Strategy(int(constexprs["STRATEGY"]))]
        elif v["kernel"] in ("_stats_partial_kernel", "_backward_sums_kernel"):
            strategy = "split"
        else:
            continue
        tile = constexprs["BLOCK_C"] * constexprs["BLOCK_S"]
        key = (v["kernel"], strategy, v.get("element_size", 4), v["num_warps"], tile)
        out[key] = min(out.get(key, 1 << 30), v["programs_per_sm"])
    return out


def cases() -> list[tuple[str, tuple[int, int, int, int], str, str]]:
    """The modelled cases: ADE20K generator layers and their fmiddle layers at batch 8 and 1, fp32 and bf16,
    instance statistics; batch and group(32) statistics at batch 8."""
    layers = ADE20K_256 + FMIDDLE
    out = []
    for batch in (8, 1):
        for norm in ("instance", "batch", "group") if batch == 8 else ("instance",):
            for dtype in DTYPES:
                for layer, c, h, w in layers:
                    out.append((layer, (batch, c, h, w), dtype, norm))
    return out


def markdown(predictions: list[Prediction]) -> str:
    lines = [
        "| layer | N x C x H x W | dtype | norm | path fwd / bwd | programs fwd / bwd | waves | bytes/elem fwd / bwd "
        "| predicted % of copy bandwidth fwd / bwd |",
        "|---|---|---|---|---|---|---:|---|---|",
    ]
    lines.extend(
        f"| {p.layer} | {'x'.join(map(str, p.shape))} | {p.dtype} | {p.norm} | {p.path} / {p.path_backward} | "
        f"{p.programs} / {p.programs_backward} | {p.waves:.2f} | {p.bytes_forward:.2f} / {p.bytes_backward:.2f} | "
        f"{100 * p.fraction_forward:.0f} / {100 * p.fraction_backward:.0f} |"
        for p in predictions
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compile-report", help="JSON of benchmarks/compile_check.py --json (programs per SM)")
    parser.add_argument("--sms", type=int, default=132)
    parser.add_argument("--l2-mb", type=float, default=50.0)
    parser.add_argument("--in-flight-kb", type=float, default=40.0)
    parser.add_argument("--launch-us", type=float, default=3.0)
    parser.add_argument("--json", help="also write the predictions here")
    parser.add_argument("--write", help="replace the table between the launch-model markers of this markdown file")
    args = parser.parse_args()
    per_sm = programs_per_sm_from_report(args.compile_report) if args.compile_report else None
    device = Device(args.sms, args.l2_mb * 1e6, args.in_flight_kb * 1e3, args.launch_us * 1e-6, per_sm)
    predictions = [predict(*case, device) for case in cases()]
    if args.compile_report:
        source = f"per variant, compile report of Triton {json.loads(Path(args.compile_report).read_text())['triton']}"
    else:
        source = f"defaults {DEFAULT_PROGRAMS_PER_SM}"
    text = (f"Model: {device.sms} SMs, L2 {args.l2_mb:.0f} MB, programs per SM {source}; NCHW, spatial gamma and "
            f"beta; forward and backward each with its own plan and its kernels' own occupancy.\n\n"
            + markdown(predictions))  # fmt: skip
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps([p.__dict__ for p in predictions], indent=1))
    if args.write:
        page = Path(args.write).read_text()
        begin, end = "<!-- launch-model:begin -->", "<!-- launch-model:end -->"
        head, rest = page.split(begin)
        _, tail = rest.split(end)
        Path(args.write).write_text(f"{head}{begin}\n{text}\n{end}{tail}")


if __name__ == "__main__":
    main()
