"""Turn a pytest-benchmark JSON of ``benchmarks/test_cpu_modulated_norm.py`` into a markdown table of ratios.

Usage: ``python benchmarks/summarize.py benchmarks/results/cpu.json``
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def summarize(path: str) -> str:
    with open(path) as f:
        data = json.load(f)
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        groups[bench["group"]][bench["extra_info"]["impl"]] = bench
    machine = data.get("machine_info", {})
    info = data["benchmarks"][0]["extra_info"]
    lines = [
        f"CPU: {machine.get('cpu', {}).get('brand_raw', 'unknown')}, {info['threads']} threads, "
        f"torch {info['torch']}, {data.get('datetime', '')[:10]}",
        "",
        "| layer (batch 1) | original fwd+bwd median (ms) | spadenorm (ms) | speedup "
        "| saved for backward, in activations: original / spadenorm |",
        "|---|---:|---:|---:|---:|",
    ]
    for group, impls in groups.items():
        orig, ours = impls["original"], impls["spadenorm"]
        speedup = orig["stats"]["median"] / ours["stats"]["median"]
        act = ours["extra_info"]["activation_bytes"]
        saved = f"{orig['extra_info']['saved_bytes'] / act:.2f}x / {ours['extra_info']['saved_bytes'] / act:.2f}x"
        lines.append(
            f"| {group} | {orig['stats']['median'] * 1e3:.2f} | {ours['stats']['median'] * 1e3:.2f} | "
            f"{speedup:.2f}x | {saved} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(sys.argv[1]))
