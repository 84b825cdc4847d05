"""Turn pytest-benchmark JSON from ``benchmarks/`` into markdown tables (and, for the GPU suite, a JSON summary).

CPU runs (``test_cpu_modulated_norm.py``): spadenorm against the original formulation, per shape.
GPU runs (``test_gpu_kernels.py``): per case (statistics, shape, dtype, pass), the device time of the fused kernels,
the bytes the ideal kernel moves per element, the bandwidth that implies and its fraction of the measured copy
bandwidth, and the speedups against eager and compiled PyTorch; the forced launch paths side by side; CLADE against
spatial SPADE; SPADE fed class ids against the original formulation (time, saved bytes, peak memory). Every figure
is computed here from the recorded device times and ideal bytes.

Usage::

    python benchmarks/summarize.py RESULTS.json                 # markdown to stdout (CPU or GPU)
    python benchmarks/summarize.py PART.json [PART.json ...] --env device.json --steps gpu_steps.tsv --out DIR

With ``--out`` (GPU runs) the parts are merged into ``DIR/gpu_bench.json`` (with the environment of ``--env``, the
JSON of ``gpu_preflight.py``, under ``gpu_env``), the report is written to ``DIR/gpu_summary.md`` and
``DIR/gpu_summary.json``, and a short digest is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any


def groups(data: dict) -> dict[str, dict[str, dict]]:
    """Benchmarks by group (shape), then by implementation."""
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        out[bench["group"]][bench["extra_info"]["impl"]] = bench
    return out


def ms(bench: dict) -> float:
    """Median time in milliseconds."""
    return bench["stats"]["median"] * 1e3


def summarize_cpu(data: dict) -> str:
    """The op and layer table; other benchmarks in the same file (the model step) are left to report.py."""
    machine = data.get("machine_info", {})
    info = next(b["extra_info"] for b in data["benchmarks"] if "threads" in b["extra_info"])
    lines = [
        f"CPU: {machine.get('cpu', {}).get('brand_raw', 'unknown')}, {info['threads']} threads, "
        f"torch {info['torch']}, {data.get('datetime', '')[:10]}",
        "",
        "| layer (batch 1) | original fwd+bwd median (ms) | spadenorm (ms) | speedup "
        "| saved for backward, in activations: original / spadenorm |",
        "|---|---:|---:|---:|---:|",
    ]
    for group, impls in groups(data).items():
        if (
            "original" not in impls
            or "spadenorm" not in impls
            or "activation_bytes" not in impls["spadenorm"]["extra_info"]
        ):
            continue
        orig, ours = impls["original"], impls["spadenorm"]
        act = ours["extra_info"]["activation_bytes"]
        saved = f"{orig['extra_info']['saved_bytes'] / act:.2f}x / {ours['extra_info']['saved_bytes'] / act:.2f}x"
        lines.append(f"| {group} | {ms(orig):.2f} | {ms(ours):.2f} | {ms(orig) / ms(ours):.2f}x | {saved} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------- GPU
TOLERANCE = {"fp32": 1e-4, "bf16": 2e-2, "fp16": 5e-3}
"""Relative error (against float64) above which a case is listed for a look, besides four times eager's error."""


def ideal_bytes_per_element(mode: str, element_size: int) -> int:
    """Bytes per element of x that the ideal spatial-modulation kernel moves.

    Forward reads x, gamma, beta and writes y (4 tensors); backward reads dy, x, gamma and writes dx, dgamma (5; dbeta
    is dy itself).

    >>> ideal_bytes_per_element("forward", 2), ideal_bytes_per_element("backward", 4)
    (8, 20)
    >>> ideal_bytes_per_element("forward+backward", 4)
    36
    """
    return {"forward": 4, "backward": 5, "forward+backward": 9}[mode] * element_size


def merge(parts: list[dict], env: dict | None = None) -> dict:
    """One pytest-benchmark JSON from the GPU parts (metadata of the first), with ``env`` under ``gpu_env``.

    Entries without a device time (a case interrupted between its timing and its record) are left out.
    """
    if not parts:
        return {"benchmarks": [], "gpu_env": env or {}}
    benches = [b for part in parts for b in part.get("benchmarks", []) if _is_gpu_case(b)]
    merged = dict(parts[0], benchmarks=benches)
    if env:
        merged["gpu_env"] = env
    return merged


def copy_bandwidth_gbs(data: dict) -> float | None:
    """The run's copy bandwidth: the preflight's (``gpu_env``), else the median of the ones the benchmarks recorded."""
    env = data.get("gpu_env") or {}
    if env.get("copy_bandwidth_gbs"):
        return float(env["copy_bandwidth_gbs"])
    values = [
        b["extra_info"]["copy_bandwidth_gbs"] for b in data["benchmarks"] if "copy_bandwidth_gbs" in b["extra_info"]
    ]
    return statistics.median(values) if values else None


def _is_gpu_case(bench: dict) -> bool:
    return "device_ms" in bench.get("extra_info", {})


def gpu_cases(data: dict) -> list[dict[str, Any]]:
    """One flat record per GPU benchmark, with the report's figures computed from its device time and ideal bytes.

    ``device_us``: median device time; ``op_us``: median wall clock of a call (pytest-benchmark); ``gbs``: ideal bytes
    over device time; ``fraction_of_copy``: that over the copy bandwidth; ``vs_eager``, ``vs_compiled``: the baseline's
    device time over this case's (above 1: this case is faster); ``vs_spatial`` (CLADE): spatial SPADE's over this.
    """
    copy = copy_bandwidth_gbs(data)
    cases = []
    for bench in data["benchmarks"]:
        if not _is_gpu_case(bench):
            continue
        info = bench["extra_info"]
        seconds = info["device_ms"]["median_ms"] * 1e-3
        gbs = info["ideal_bytes"] / seconds / 1e9
        cases.append(
            {
                "group": bench["group"],
                **{k: info.get(k) for k in ("step", "kind", "modulation", "labels", "layer", "shape", "dtype")},
                **{k: info.get(k) for k in ("mode", "impl", "path", "overrides", "plan", "rel_err")},
                "device_us": seconds * 1e6,
                "device_q1_us": info["device_ms"]["q1_ms"] * 1e3,
                "device_q3_us": info["device_ms"]["q3_ms"] * 1e3,
                "host_ahead": info["device_ms"]["host_ahead"],
                "op_us": bench["stats"]["median"] * 1e6,
                "ideal_bytes": info["ideal_bytes"],
                "bytes_per_element": info["ideal_bytes"] / info["numel"],
                "gbs": gbs,
                "fraction_of_copy": gbs / copy if copy else None,
                "prepare_s": info.get("prepare_s"),
                "measure_s": info.get("measure_s"),
            }
        )
    by_group: dict[str, dict[str, dict]] = defaultdict(dict)
    for case in cases:
        by_group[case["group"]][case["impl"]] = case
    for case in cases:
        row = by_group[case["group"]]
        for baseline in ("eager", "compiled"):
            other = row.get(baseline)
            case[f"vs_{baseline}"] = other["device_us"] / case["device_us"] if other and other is not case else None
        spatial = _spatial_counterpart(case, by_group)
        case["vs_spatial"] = spatial["device_us"] / case["device_us"] if spatial else None
        case["spatial_us"] = spatial["device_us"] if spatial else None
    return cases


def _spatial_counterpart(case: dict, by_group: dict[str, dict[str, dict]]) -> dict | None:
    """For a CLADE case: spadenorm's spatial SPADE case of the same shape, dtype and pass (instance statistics)."""
    if case["modulation"] != "class":
        return None
    shape = "x".join(map(str, case["shape"]))
    return by_group.get(f"{case['kind']} {case['layer']} {shape} {case['dtype']} {case['mode']}", {}).get("spadenorm")


def _us(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def _x(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _err(rel_err: dict | None) -> str:
    if not rel_err:
        return ""
    return " / ".join(f"{rel_err[k]:.1e}" for k in ("y", "dx") if k in rel_err)


def _device(case: dict | None) -> str:
    """Device time in us, starred when the host fell behind the GPU during some timed calls."""
    if case is None:
        return ""
    return _us(case["device_us"]) + ("*" if case["host_ahead"] < 1 else "")


def _rows(cases: list[dict], keep: Callable[[dict], bool]) -> dict[str, dict[str, dict]]:
    """Cases by row (group) in order of first appearance, then by implementation, for the cases ``keep`` accepts."""
    rows: dict[str, dict[str, dict]] = {}
    for case in cases:
        if keep(case):
            rows.setdefault(case["group"], {})[case["impl"]] = case
    return rows


def _first(impls: dict[str, dict]) -> dict:
    return next(iter(impls.values()))


def _describe(case: dict) -> list[str]:
    shape = "x".join(map(str, case["shape"]))
    return [case["kind"], case["layer"], shape, case["dtype"], case["mode"]]


def baseline_table(cases: list[dict]) -> str:
    """Spatial modulation: spadenorm (the launch rule's path) against eager and compiled PyTorch."""
    lines = [
        "| statistics | layer | N x C x H x W | dtype | pass | ideal B/elem | spadenorm us | GB/s | of copy | op us "
        "| eager us | vs eager | compiled us | vs compiled | rel. err. y / dx |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = _rows(cases, lambda c: c["modulation"] == "spatial" and c["impl"] in ("spadenorm", "eager", "compiled"))
    for impls in rows.values():
        ours, eager, comp = impls.get("spadenorm"), impls.get("eager"), impls.get("compiled")
        any_case = _first(impls)
        cells = [
            *_describe(any_case),
            f"{any_case['bytes_per_element']:.0f}",
            _device(ours),
            f"{ours['gbs']:.0f}" if ours else "",
            _pct(ours["fraction_of_copy"]) if ours else "",
            _us(ours["op_us"]) if ours else "",
            _device(eager),
            _x(ours["vs_eager"]) if ours else "",
            _device(comp),
            _x(ours["vs_compiled"]) if ours else "",
            _err(ours["rel_err"]) if ours else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paths_table(cases: list[dict]) -> str:
    """Forced launch paths side by side with the rule's choice (device us, fraction of copy; fastest named)."""
    rows = _rows(cases, lambda c: c["modulation"] == "spatial" and c["impl"].startswith("spadenorm"))
    rows = {g: impls for g, impls in rows.items() if any(name != "spadenorm" for name in impls)}
    paths: list[str] = []
    for impls in rows.values():
        paths += [name for name in impls if name != "spadenorm" and name not in paths]
    names = [p.removeprefix("spadenorm ") for p in paths]
    header = ["statistics", "layer", "N x C x H x W", "dtype", "pass", "rule's plan", "rule", *names, "fastest"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|---|---|---|" + "---:|" * (len(paths) + 1) + "---|"]
    for impls in rows.values():
        fastest = min(impls.values(), key=lambda c: c["device_us"])
        rule = impls.get("spadenorm")
        cells = [*_describe(_first(impls)), (rule or {}).get("plan") or ""]
        for name in ["spadenorm", *paths]:
            case = impls.get(name)
            cell = "" if case is None else f"{_device(case)} ({_pct(case['fraction_of_copy'])})"
            cells.append(f"**{cell}**" if case is fastest else cell)
        cells.append("rule" if fastest["impl"] == "spadenorm" else fastest["impl"].removeprefix("spadenorm "))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def clade_table(cases: list[dict]) -> str:
    """CLADE (class tables) against spadenorm's spatial SPADE of the same shape, and against eager CLADE."""
    lines = [
        "| labels | N x C x H x W | dtype | pass | implementation | us | ideal B/elem | GB/s | of copy "
        "| spatial SPADE us | vs spatial | eager CLADE us | vs eager |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        if case["modulation"] != "class":
            continue
        cells = [
            case["labels"],
            "x".join(map(str, case["shape"])),
            case["dtype"],
            case["mode"],
            case["impl"],
            _device(case),
            f"{case['bytes_per_element']:.1f}",
            f"{case['gbs']:.0f}",
            _pct(case["fraction_of_copy"]),
            _us(case["spatial_us"]),
            _x(case["vs_spatial"]),
            "" if case["impl"] == "eager" or case["vs_eager"] is None else _us(case["vs_eager"] * case["device_us"]),
            "" if case["impl"] == "eager" else _x(case["vs_eager"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def flagged(cases: list[dict]) -> list[str]:
    """Cases to look at: the host fell behind the GPU, or spadenorm's error is high (absolute, or against eager's)."""
    notes = []
    eager_err = {(c["group"].rsplit(" ", 1)[0], c["kind"]): c["rel_err"] for c in cases if c["impl"] == "eager"}
    for case in cases:
        name = f"{case['group']} {case['impl']}"
        if case["host_ahead"] < 1:
            notes.append(f"{name}: the host fell behind the GPU in {1 - case['host_ahead']:.0%} of the timed calls")
        err = case["rel_err"] or {}
        if case["impl"] in ("eager", "compiled") or not err or case["mode"] != "forward+backward":
            continue
        ref = eager_err.get((case["group"].rsplit(" ", 1)[0], case["kind"])) or {}
        for key, value in err.items():
            limit = max(TOLERANCE.get(case["dtype"], 1e-2), 4 * ref.get(key, 0.0))
            if not value <= limit:  # NaN too
                notes.append(f"{name}: relative error of {key} {value:.1e} (limit {limit:.1e})")
    return notes


def time_table(cases: list[dict]) -> str:
    """Per step: cases measured, and the seconds spent preparing them (inputs, compilation) and measuring them."""
    totals: dict[str, list[float]] = {}
    for case in cases:
        row = totals.setdefault(case["step"] or "?", [0, 0.0, 0.0])
        row[0] += 1
        row[1] += case["prepare_s"] or 0.0
        row[2] += case["measure_s"] or 0.0
    lines = ["| step | cases measured | preparing (s) | measuring (s) |", "|---|---:|---:|---:|"]
    lines += [f"| {step} | {n:.0f} | {prep:.1f} | {meas:.1f} |" for step, (n, prep, meas) in totals.items()]
    return "\n".join(lines)


def steps_table(steps: list[dict[str, str]]) -> str:
    lines = ["| step | status | exit code | seconds | limit (s) |", "|---|---|---:|---:|---:|"]
    lines += [f"| {s['step']} | {s['status']} | {s['exit']} | {s['seconds']} | {s['limit']} |" for s in steps]
    return "\n".join(lines)


def read_steps(path: str | Path) -> list[dict[str, str]]:
    """The step table ``gpu_suite.sh`` writes: a header line, then one tab-separated line per step."""
    lines = [line.split("\t") for line in Path(path).read_text().splitlines() if line.strip()]
    return [dict(zip(lines[0], line, strict=False)) for line in lines[1:]] if lines else []


def header(data: dict) -> str:
    """Device, versions, date, commit, copy bandwidth and the timing method of a GPU run."""
    env = data.get("gpu_env") or {}
    info: dict[str, Any] = next((b["extra_info"] for b in data["benchmarks"] if _is_gpu_case(b)), {})
    device = env.get("device_name") or info.get("device_name", "unknown GPU")
    if env.get("sm_count"):
        device += f" ({env['sm_count']} SMs, L2 {env.get('l2_bytes', 0) / 2**20:.0f} MiB)"
    versions = (
        f"torch {env.get('torch') or info.get('torch', '?')}, triton {env.get('triton') or info.get('triton', '?')}"
    )
    if env.get("python"):
        versions += f", Python {env['python']}"
    if env.get("driver"):
        versions += f", driver {env['driver']}"
    commit = env.get("commit") or (data.get("commit_info") or {}).get("id")
    commit_text = "not recorded" if not commit else commit[:12] + (" (uncommitted changes)" if env.get("dirty") else "")
    copy = copy_bandwidth_gbs(data)
    return "\n".join(
        [
            f"- Device: {device}",
            f"- Versions: {versions}",
            f"- Date: {env.get('date') or data.get('datetime', '?')}",
            f"- Commit: {commit_text}",
            f"- Copy bandwidth: {copy:.0f} GB/s (device-to-device copy of 1 GiB, bytes read + written, median, L2 "
            "flushed before each copy)"
            if copy
            else "- Copy bandwidth: not measured",
            "- Times: device time in us, median of CUDA-event-timed calls with L2 flushed before each and the host "
            "kept ahead of the GPU (* where it fell behind: host time may be included); op = wall clock of one call "
            "from Python to synchronization; GB/s = ideal bytes / device time; vs X = X's device time / this one's.",
        ]
    )


def lookup_cases(data: dict) -> list[dict[str, Any]]:
    """The label-lookup step's records (``test_label_conv``): device time, peak memory, saved bytes, error."""
    cases = []
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if info.get("benchmark") != "label_conv_gpu":
            continue
        cases.append(
            {
                "group": bench["group"],
                **{k: info.get(k) for k in ("model", "batch", "dtype", "mode", "impl", "saved_bytes")},
                "device_us": info["lookup_device_ms"]["median_ms"] * 1e3,
                "peak_mib": info["peak_allocated_bytes"] / 2**20,
                "rel_err": info.get("rel_err_vs_original"),
            }
        )
    return cases


def lookup_table(cases: list[dict[str, Any]]) -> str:
    """Per model and pass: each implementation's device time and saved bytes relative to the original formulation."""
    by_group: dict[str, dict[str, dict]] = defaultdict(dict)
    for case in cases:
        by_group[case["group"]][case["impl"]] = case
    lines = [
        "| model, pass | implementation | device us | time / original's | saved for backward (MiB) "
        "| bytes / original's | peak allocated (MiB) | error vs original |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for group, impls in by_group.items():
        original = impls.get("original")
        for impl, case in impls.items():
            time_ratio = _x(case["device_us"] / original["device_us"]) if original else ""
            saved = case["saved_bytes"]
            bytes_ratio = _x(saved / original["saved_bytes"]) if original and original["saved_bytes"] else ""
            error = "" if case["rel_err"] is None else f"{case['rel_err']:.1e}"
            lines.append(
                f"| {group.removeprefix('lookup ')} | {impl} | {_us(case['device_us'])} | {time_ratio} "
                f"| {saved / 2**20:.1f} | {bytes_ratio} | {case['peak_mib']:.0f} | {error} |"
            )
    return "\n".join(lines)


def summarize_gpu(data: dict, steps: list[dict[str, str]] | None = None) -> str:
    """The GPU report's tables (markdown): against baselines, launch paths, CLADE, cases to look at, steps."""
    cases = gpu_cases(data)
    parts = [f"{len(cases)} cases measured."]
    if steps:
        parts += ["", "### Steps of the run", "", steps_table(steps)]
    if cases:
        parts += ["", "### Where the time went", "", time_table(cases)]
    if any(c["modulation"] == "spatial" for c in cases):
        parts += [
            "",
            "### Spatial SPADE modulation: spadenorm against eager and torch.compile",
            "",
            baseline_table(cases),
        ]
    paths = paths_table(cases)
    if paths.count("\n") > 1:
        parts += ["", "### Launch paths (device us, fraction of copy bandwidth; fastest in bold)", "", paths]
    if any(c["modulation"] == "class" for c in cases):
        parts += ["", "### CLADE class tables against spatial SPADE", "", clade_table(cases)]
    lookup = lookup_cases(data)
    if lookup:
        parts += ["", "### SPADE fed class ids (the first convolution by lookups) against the original", ""]
        parts += [lookup_table(lookup)]
    notes = flagged(cases)
    if notes:
        parts += ["", "### Cases to look at", "", *(f"- {n}" for n in notes)]
    return "\n".join(parts)


def gpu_report(data: dict, steps: list[dict[str, str]] | None = None) -> tuple[str, dict]:
    """The markdown report (header and tables) and its JSON counterpart."""
    markdown = "\n".join(["# GPU benchmarks", "", header(data), "", summarize_gpu(data, steps), ""])
    summary = {
        "env": data.get("gpu_env") or {},
        "copy_bandwidth_gbs": copy_bandwidth_gbs(data),
        "steps": steps or [],
        "cases": gpu_cases(data),
        "flagged": flagged(gpu_cases(data)),
    }
    return markdown, summary


def digest(data: dict, steps: list[dict[str, str]] | None = None) -> str:
    """A short text for the console: the steps, and instance statistics at batch 8, forward+backward."""
    lines = [header(data).splitlines()[0].removeprefix("- ")]
    copy = copy_bandwidth_gbs(data)
    lines.append(f"copy bandwidth {copy:.0f} GB/s" if copy else "copy bandwidth not measured")
    lines += [f"step {s['step']}: {s['status']} ({s['seconds']} s of {s['limit']})" for s in steps or []]
    lines.append("instance, batch 8, forward+backward: layer dtype | spadenorm us | of copy | vs eager | vs compiled")
    for case in gpu_cases(data):
        if (case["kind"], case["impl"], case["mode"], case["modulation"]) != (
            "instance",
            "spadenorm",
            "forward+backward",
            "spatial",
        ) or case["shape"][0] != 8:
            continue
        lines.append(
            f"  {case['layer']} {case['dtype']} | {_device(case)} | {_pct(case['fraction_of_copy'])} "
            f"| {_x(case['vs_eager'])} | {_x(case['vs_compiled'])}"
        )
    return "\n".join(lines)


def summarize(path: str) -> str:
    with open(path) as f:
        data = json.load(f)
    if not data["benchmarks"]:
        return "no benchmarks in " + path
    if data["benchmarks"][0]["extra_info"].get("device") == "cuda":
        return summarize_gpu(data)
    return summarize_cpu(data)


def write_gpu_outputs(
    parts: list[str | Path], out: str | Path, env: str | Path | None = None, steps: str | Path | None = None
) -> str:
    """Merge the parts that exist, write gpu_bench.json, gpu_summary.md and gpu_summary.json to ``out``; the digest."""
    out = Path(out)
    env_data = json.loads(Path(env).read_text()) if env and Path(env).is_file() else None
    data = merge([json.loads(Path(p).read_text()) for p in parts if Path(p).is_file()], env_data)
    step_rows = read_steps(steps) if steps and Path(steps).is_file() else None
    (out / "gpu_bench.json").write_text(json.dumps(data))
    markdown, summary = gpu_report(data, step_rows)
    (out / "gpu_summary.md").write_text(markdown)
    (out / "gpu_summary.json").write_text(json.dumps(summary, indent=1))
    return digest(data, step_rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="pytest-benchmark JSON files (several: the parts of a GPU run)")
    parser.add_argument("--env", help="the JSON of gpu_preflight.py (device, versions, copy bandwidth)")
    parser.add_argument("--steps", help="the step table of gpu_suite.sh")
    parser.add_argument("--out", help="write gpu_bench.json, gpu_summary.md and gpu_summary.json here")
    args = parser.parse_args(argv)
    if args.out:
        print(write_gpu_outputs(args.results, args.out, args.env, args.steps))
    else:
        print(summarize(args.results[0]))


if __name__ == "__main__":
    main()
