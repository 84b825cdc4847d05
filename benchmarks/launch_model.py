"""A model of every launch the Triton backend makes at the SPADE generator's shapes: bytes moved per element,
programs, waves, and the fraction of copy bandwidth each launch should reach on an H100/H200.

Nothing here runs a kernel. The path, tiles and grid come from the launch rule itself (``layout.row_launch``,
``layout.fills_device``, ``layout.choose_tiles_for``) for a device of ``--sms`` SMs; the programs each SM holds
come from a compile report (``benchmarks/compile_check.py --json``: registers and shared memory of every compiled
variant, for the Triton of the GPU) or, without one, from :data:`DEFAULT_PROGRAMS_PER_SM`. The memory side is a
model with stated assumptions:

* Bytes per element of x (``s`` bytes each): forward reads x, gamma, beta and writes y (4, the minimum); backward
  reads dy, x, gamma and writes dx, dgamma (5; dbeta is dy itself). A row kernel that sweeps its row twice re-reads
  x (forward) or dy, x, gamma (backward) in the second sweep; the fraction ``h`` of that re-read served by L2 is
  ``min(1, L2 / working set)``, with the working set the rows in flight (resident programs x row bytes) times the
  tensors they keep touching (2 forward: x and the modulation it meets in the second sweep; 3 backward). The
  split-row path reads x once for the statistics and once to modulate (5 forward), and dy, x, gamma twice in the
  backward (8), except that x stays in L2 between the two launches when it fits in half of it.
* Time: bytes / copy bandwidth, divided by the wave efficiency (programs over whole waves of the device's
  capacity; a persistent grid's rows over its programs) and by a latency factor (loads in flight per SM below
  ``--in-flight-kb``, by Little's law about 40 KB for HBM3e at 1.2 us: a resident row's whole tile, a swept row's
  pipeline of ``stages - 1`` tiles ahead), plus ``--launch-us`` per launch. The backward is modelled with the
  forward's plan and programs per SM (its own use 8 KB persistent tiles and the backward kernels' occupancy).
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

os.environ.setdefault("TRITON_INTERPRET", "1")  # importing the layout module needs no GPU
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, also when spadenorm is not installed
from benchmarks.shapes import ADE20K_256
from spadenorm.backends.triton.layout import (
    RowLaunch,
    Strides,
    cdiv,
    choose_tiles_for,
    fills_device,
    row_launch,
)

DEFAULT_PROGRAMS_PER_SM = {"resident": 4, "swept": 4, "persistent": 2, "split": 4}
FMIDDLE = [("up_0.norm_1", 512, 32, 32), ("up_1.norm_1", 256, 64, 64), ("up_2.norm_1", 128, 128, 128),
           ("up_3.norm_1", 64, 256, 256)]  # fmt: skip
DTYPES = {"fp32": 4, "bf16": 2}


@dataclass
class Device:
    """What the model assumes of the GPU."""

    sms: int = 132
    l2_bytes: float = 50e6
    in_flight_bytes: float = 40e3
    launch_s: float = 3e-6
    programs_per_sm: dict[str, int] | None = None

    def per_sm(self, kind: str) -> int:
        return (self.programs_per_sm or DEFAULT_PROGRAMS_PER_SM).get(kind, DEFAULT_PROGRAMS_PER_SM[kind])


@dataclass
class Prediction:
    layer: str
    shape: tuple[int, int, int, int]
    dtype: str
    norm: str
    path: str
    programs: int
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


def predict_row(layer: str, shape: tuple[int, int, int, int], dtype: str, norm: str, groups: int, plan: RowLaunch,
                device: Device) -> Prediction:  # fmt: skip
    n, c, h, w = shape
    s = h * w
    elem = DTYPES[dtype]
    size = n * c * s * elem
    per_sm = device.per_sm(plan.strategy)
    capacity = device.sms * per_sm
    rows = n * plan.grid_c
    waves = plan.programs / capacity
    if plan.strategy == "persistent":
        efficiency = rows / (math.ceil(rows / plan.programs) * plan.programs) * min(1.0, waves)
    else:
        efficiency = _wave_efficiency(plan.programs, capacity)
    in_flight_rows = min(plan.programs, capacity)
    tile_bytes = plan.block_c * plan.block_s * elem
    if plan.strategy == "resident":
        forward, backward = 4.0, 5.0
        in_flight = tile_bytes * 3
    else:
        row_bytes = plan.channels_per_program * s * elem
        forward = 4.0 + (1 - _hit(device, in_flight_rows, row_bytes, 2))
        backward = 5.0 + 3 * (1 - _hit(device, in_flight_rows, row_bytes, 3))
        in_flight = tile_bytes * (plan.stages - 1)  # a pipeline of STAGES keeps STAGES - 1 tiles ahead
    latency = _latency_factor(device, per_sm, in_flight)
    eff = max(1e-3, min(efficiency, 1.0) * latency)
    fractions = _fraction(4, forward, eff, 1, size, device), _fraction(5, backward, eff, 1, size, device)
    return Prediction(layer, shape, dtype, norm, plan.strategy, plan.programs, waves, forward, backward, 1, 1,
                      *fractions)  # fmt: skip


def predict_split(layer: str, shape: tuple[int, int, int, int], dtype: str, norm: str, device: Device) -> Prediction:
    n, c, h, w = shape
    s = h * w
    elem = DTYPES[dtype]
    size = n * c * s * elem
    strides = Strides(c * s, s, 1)
    capacity = device.sms * device.per_sm("split")
    tiles = choose_tiles_for(n, c, s, strides, interpreter=False, target_programs=capacity)
    programs = n * cdiv(c, tiles.block_c) * cdiv(s, tiles.span)
    efficiency = _wave_efficiency(programs, capacity)
    latency = _latency_factor(device, device.per_sm("split"), tiles.block_c * tiles.block_s * elem * 2)
    x_stays = size <= device.l2_bytes / 2
    forward = 5.0 - (1.0 if x_stays else 0.0)
    backward = 8.0 - (3.0 if 3 * size <= device.l2_bytes / 2 else 0.0)
    eff = max(1e-3, efficiency * latency)
    fractions = _fraction(4, forward, eff, 3, size, device), _fraction(5, backward, eff, 2, size, device)
    return Prediction(layer, shape, dtype, norm, "split-row", programs, programs / capacity, forward, backward, 3, 2,
                      *fractions)  # fmt: skip


def predict(layer: str, shape: tuple[int, int, int, int], dtype: str, norm: str, device: Device) -> Prediction:
    """The launch rule's path for this case and its modelled bytes and bandwidth."""
    n, c, h, w = shape
    s = h * w
    if norm == "batch":
        return predict_split(layer, shape, dtype, norm, device)
    groups = c if norm == "instance" else 32
    fill = 2 * device.sms
    capacity = device.sms * device.per_sm("persistent")
    plan = row_launch(n, c, s, Strides(c * s, s, 1), DTYPES[dtype], groups, fill=fill, capacity=capacity)
    if plan is None or not fills_device(plan, n, fill):
        return predict_split(layer, shape, dtype, norm, device)
    return predict_row(layer, shape, dtype, norm, groups, plan, device)


def programs_per_sm_from_report(path: str) -> dict[str, int]:
    """Programs per SM of the forward launches the model describes, from a ``compile_check.py --json`` report: the
    fewest among the variants of each row strategy (``_row_fwd_kernel``) and of the split-row forward kernels
    (``_stats_partial_kernel``, ``_modulate_fwd_kernel``) that have a spatial (or no) gamma, no scale and, for the
    row kernels, instance statistics."""
    variants: list[dict[str, Any]] = json.loads(Path(path).read_text())["variants"]
    out: dict[str, int] = {}
    for v in variants:
        constexprs = v["constexprs"]
        if constexprs.get("GAMMA", 1) != 1 or constexprs.get("HAS_SCALE") or not constexprs.get("PER_CHANNEL", True):
            continue
        if v["kernel"] == "_row_fwd_kernel":
            kind = "resident" if constexprs.get("RESIDENT") else (
                "persistent" if constexprs.get("EVICT_FIRST") else "swept")  # fmt: skip
        elif v["kernel"] in ("_stats_partial_kernel", "_modulate_fwd_kernel"):
            kind = "split"
        else:
            continue
        out[kind] = min(out.get(kind, 1 << 30), v["programs_per_sm"])
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
        "| layer | N x C x H x W | dtype | norm | path | programs | waves | bytes/elem fwd / bwd "
        "| predicted % of copy bandwidth fwd / bwd |",
        "|---|---|---|---|---|---:|---:|---|---|",
    ]
    lines.extend(
        f"| {p.layer} | {'x'.join(map(str, p.shape))} | {p.dtype} | {p.norm} | {p.path} | {p.programs} | "
        f"{p.waves:.2f} | {p.bytes_forward:.2f} / {p.bytes_backward:.2f} | "
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
    source = f"compile report of Triton {json.loads(Path(args.compile_report).read_text())['triton']}" if (
        args.compile_report) else "defaults"  # fmt: skip
    text = (f"Model: {device.sms} SMs, L2 {args.l2_mb:.0f} MB, programs per SM "
            f"{device.programs_per_sm or DEFAULT_PROGRAMS_PER_SM} ({source}); NCHW, spatial gamma and beta.\n\n"
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
