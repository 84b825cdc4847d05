"""Turn pytest-benchmark JSON from ``benchmarks/`` into markdown tables.

CPU runs (``test_cpu_modulated_norm.py``): spadenorm against the original formulation, per shape.
GPU runs (``test_gpu_kernels.py``): per shape, dtype and pass, the fused kernels against eager and compiled
original formulation, with achieved GB/s and the fraction of the measured copy bandwidth.

Usage: ``python benchmarks/summarize.py RESULTS.json``
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


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


def summarize_gpu(data: dict) -> str:
    info = data["benchmarks"][0]["extra_info"]
    lines = [
        f"GPU: {info['device_name']}, torch {info['torch']}, {data.get('datetime', '')[:10]}; "
        f"measured copy bandwidth {info['copy_bandwidth_gbs']:.0f} GB/s (read + write)",
        "",
        "| shape (batch 8), dtype, pass | spadenorm (ms) | GB/s (ideal bytes) | of copy bw "
        "| eager (ms) | vs eager | compiled (ms) | vs compiled | two-phase (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for group, impls in groups(data).items():
        ours = impls.get("spadenorm") or impls.get("clade")
        if ours is None:
            continue
        row = [
            group,
            f"{ms(ours):.3f}",
            f"{ours['extra_info']['gbs']:.0f}",
            f"{ours['extra_info']['fraction_of_copy']:.0%}",
        ]
        for other in ("eager", "compiled"):
            if other in impls:
                row += [f"{ms(impls[other]):.3f}", f"{ms(impls[other]) / ms(ours):.2f}x"]
            elif other == "eager" and "spade" in impls:  # CLADE group: compare with spatial SPADE
                row += [f"{ms(impls['spade']):.3f} (spatial)", f"{ms(impls['spade']) / ms(ours):.2f}x"]
            else:
                row += ["", ""]
        row.append(f"{ms(impls['two-phase']):.3f}" if "two-phase" in impls else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def summarize(path: str) -> str:
    with open(path) as f:
        data = json.load(f)
    if not data["benchmarks"]:
        return "no benchmarks in " + path
    if data["benchmarks"][0]["extra_info"].get("device") == "cuda":
        return summarize_gpu(data)
    return summarize_cpu(data)


if __name__ == "__main__":
    print(summarize(sys.argv[1]))
