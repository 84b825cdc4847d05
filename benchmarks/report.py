"""Turn pytest-benchmark JSON into the tables and plots of ``docs/benchmarks.md``.

Inputs (any subset):

* ``--cpu``: ``test_cpu_modulated_norm.py`` results (the op and the SPADE layer against the original formulation);
* ``--model``: ``test_cpu_model_step.py`` results (one training step of the reference GAN);
* ``--label-conv``: ``test_cpu_label_conv.py`` results (SPADE layers and generators fed class ids);
* ``--gpu``: ``test_gpu_kernels.py`` results (``gpu_bench.json`` from ``benchmarks/gpu_suite.sh``).

The markdown tables of the op and kernel suites come from :mod:`summarize` (this script only adds the provenance
stamp, the model-step table and the plots). Every section and every PNG is stamped with the device, the versions, the
date of the run and the command that produced the JSON. pytest-benchmark does not store the command line, so pass it
(``--cpu-command``, ``--gpu-command``); the model suite records its own.

Each section is written between ``<!-- report:NAME:begin -->`` and ``<!-- report:NAME:end -->`` markers
(NAME: ``cpu``, ``model``, ``label-conv``, ``gpu``) of the page given with ``--write``, leaving the prose around
them alone; without ``--write`` the sections are printed. Plots go to ``--figures`` (default ``docs/figures``); a
section without input keeps the page's current text, except ``gpu``, which then says that no GPU figures exist.

Example (the page's CPU sections)::

    python benchmarks/report.py --cpu benchmarks/results/cpu.json \\
        --cpu-command "python -m pytest benchmarks --benchmark-enable ..." \\
        --model benchmarks/results/cpu_model.json --write docs/benchmarks.md

matplotlib is needed for the plots (``--no-plots`` skips them).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a script beside summarize.py
import summarize
from summarize import groups, ms

NO_GPU_TEXT = (
    "**No GPU figures exist yet.** `benchmarks/gpu_suite.sh` has not run on a GPU; when it has, this section holds "
    "its table and plots (`python benchmarks/report.py --gpu gpu_bench.json --write docs/benchmarks.md`)."
)


# ----------------------------------------------------------------------------------------------------------- inputs
def load(path: str | Path) -> dict:
    with open(path) as f:
        data = json.load(f)
    if not data.get("benchmarks"):
        raise ValueError(f"{path}: no benchmarks in this file")
    return data


def subset(data: dict, keep) -> dict:
    """``data`` with only the benchmarks for which ``keep(bench)`` is true."""
    return {**data, "benchmarks": [b for b in data["benchmarks"] if keep(b)]}


def is_model_step(bench: dict) -> bool:
    return bench["extra_info"].get("benchmark") == "model_step"


def is_label_conv(bench: dict) -> bool:
    return str(bench["extra_info"].get("benchmark", "")).startswith("label_conv")


def stamp(data: dict, command: str | None) -> dict[str, str]:
    """Device, versions, date and command of one JSON file."""
    machine = data.get("machine_info", {})
    info = data["benchmarks"][0]["extra_info"]
    if info.get("device") == "cuda":
        device = info.get("device_name", "unknown GPU")
    else:
        device = f"{machine.get('cpu', {}).get('brand_raw', 'unknown CPU')}, {info.get('threads', '?')} threads"
    commit = data.get("commit_info", {})
    versions = f"Python {machine.get('python_version', '?')}, torch {info.get('torch', '?')}"
    if commit.get("id"):
        versions += f", spadenorm at commit {commit['id'][:10]}" + (
            " (uncommitted changes)" if commit.get("dirty") else ""
        )
    return {
        "device": device,
        "versions": versions,
        "date": data.get("datetime", "")[:16].replace("T", " ") + " UTC",
        "command": command or info.get("command") or "(not recorded: pass it to report.py)",
    }


def stamp_markdown(s: dict[str, str]) -> str:
    return "\n".join(
        [
            f"- Device: {s['device']}",
            f"- Versions: {s['versions']}",
            f"- Date: {s['date']}",
            f"- Command: `{s['command']}`",
        ]
    )


def stamp_text(s: dict[str, str]) -> str:
    return f"{s['device']} | {s['versions']} | {s['date']}\n{s['command']}"


# ----------------------------------------------------------------------------------------------------------- tables
def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def model_rows(data: dict) -> list[dict]:
    """Per configuration: median step times, the median and range of the per-round ratios, the saved bytes."""
    rows = []
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        rows.append(
            {
                "group": bench["group"],
                "norm": info["norm"],
                "rounds": len(info["wall_s_ratios"]),
                "times": info["times"],
                **{
                    f"{impl}_{kind}": _median(info["times"][impl][kind])
                    for impl in info["times"]
                    for kind in info["times"][impl]
                },
                **{f"{kind}_ratio": _median(info[f"{kind}_ratios"]) for kind in ("wall_s", "cpu_s")},
                **{
                    f"map_{kind}_ratio": _median(info[f"map_{kind}_ratios"])
                    for kind in ("wall_s", "cpu_s")
                    if f"map_{kind}_ratios" in info
                },
                **{
                    f"{kind}_ratio_range": (min(info[f"{kind}_ratios"]), max(info[f"{kind}_ratios"]))
                    for kind in ("wall_s", "cpu_s")
                },
                **{f"{impl}_{key}": value for impl, saved in info["saved"].items() for key, value in saved.items()},
            }
        )
    return rows


def model_table(data: dict) -> str:
    mib = 2.0**20
    lines = [
        "| configuration | step, wall clock: original / spadenorm (s) | ratio, median (range) over rounds "
        "| step, CPU time: original / spadenorm (s) | ratio, median (range) "
        "| saved for backward, G step: original / spadenorm (MiB) | of which G forward (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = model_rows(data)
    if any("spadenorm_map_wall_s" in r for r in rows):
        return model_table_with_map(rows)
    for r in rows:
        step = (r["original_step_saved_bytes"] / mib, r["spadenorm_step_saved_bytes"] / mib)
        gen = (r["original_generator_saved_bytes"] / mib, r["spadenorm_generator_saved_bytes"] / mib)
        lines.append(
            f"| {r['group']} "
            f"| {r['original_wall_s']:.2f} / {r['spadenorm_wall_s']:.2f} "
            f"| {r['wall_s_ratio']:.2f}x ({r['wall_s_ratio_range'][0]:.2f} to {r['wall_s_ratio_range'][1]:.2f}) "
            f"| {r['original_cpu_s']:.2f} / {r['spadenorm_cpu_s']:.2f} "
            f"| {r['cpu_s_ratio']:.2f}x ({r['cpu_s_ratio_range'][0]:.2f} to {r['cpu_s_ratio_range'][1]:.2f}) "
            f"| {step[0]:.1f} / {step[1]:.1f} (-{step[0] - step[1]:.1f}, -{1 - step[1] / step[0]:.0%}) "
            f"| {gen[0]:.1f} / {gen[1]:.1f} |"
        )
    return "\n".join(lines)


def model_table_with_map(rows: list[dict]) -> str:
    """The model-step table with the third variant: spadenorm fed the one-hot map (its convolution)."""
    mib = 2.0**20
    lines = [
        "| configuration | step, wall clock: original / spadenorm, one-hot map / spadenorm, class ids (s) "
        "| speedup of class ids, median (range) over rounds | speedup of the map | same in CPU time: ids, map "
        "| saved for backward, G step: original / map / ids (MiB) | of which G forward (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        step = [r[f"{v}_step_saved_bytes"] / mib for v in ("original", "spadenorm_map", "spadenorm")]
        gen = [r[f"{v}_generator_saved_bytes"] / mib for v in ("original", "spadenorm_map", "spadenorm")]
        lines.append(
            f"| {r['group']} "
            f"| {r['original_wall_s']:.2f} / {r['spadenorm_map_wall_s']:.2f} / {r['spadenorm_wall_s']:.2f} "
            f"| {r['wall_s_ratio']:.2f}x ({r['wall_s_ratio_range'][0]:.2f} to {r['wall_s_ratio_range'][1]:.2f}) "
            f"| {r['map_wall_s_ratio']:.2f}x "
            f"| {r['cpu_s_ratio']:.2f}x, {r['map_cpu_s_ratio']:.2f}x "
            f"| {step[0]:.1f} / {step[1]:.1f} / {step[2]:.1f} ({step[2] / step[0]:.2f}x) "
            f"| {gen[0]:.1f} / {gen[1]:.1f} / {gen[2]:.1f} |"
        )
    return "\n".join(lines)


def crossover_table(data: dict) -> str:
    """The lookup against the one-hot convolution in one layer, by number of classes."""
    lines = [
        "| threads | classes | one-hot map and convolution (ms) | lookup (ms) "
        "| lookup / convolution, wall clock: median (range) | CPU time: median (range) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for bench in sorted(data["benchmarks"], key=lambda b: (-b["extra_info"]["threads"], b["extra_info"]["classes"])):
        info = bench["extra_info"]
        wall, cpu = info["lookup_wall_s_ratios"], info["lookup_cpu_s_ratios"]
        conv, lookup = (_median(info["times"][v]["wall_s"]) * 1e3 for v in ("convolution", "lookup"))
        lines.append(
            f"| {info['threads']} | {info['classes']} | {conv:.1f} | {lookup:.1f} "
            f"| {_median(wall):.2f}x ({min(wall):.2f} to {max(wall):.2f}) "
            f"| {_median(cpu):.2f}x ({min(cpu):.2f} to {max(cpu):.2f}) |"
        )
    return "\n".join(lines)


def fusion_table(data: dict) -> str:
    """Two convolutions for gamma and beta against one with 2C outputs, per layer."""
    lines = [
        "| case (forward + backward) | threads | two convolutions (ms) | one, 2C outputs (ms) "
        "| one / two, CPU time: median (range) | wall clock |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        two, one = (_median(info["times"][v]["wall_s"]) * 1e3 for v in ("two", "one"))
        cpu, wall = info["one_cpu_s_ratios"], info["one_wall_s_ratios"]
        lines.append(
            f"| {info['case']} | {info['threads']} | {two:.1f} | {one:.1f} "
            f"| {_median(cpu):.2f}x ({min(cpu):.2f} to {max(cpu):.2f}) | {_median(wall):.2f}x |"
        )
    return "\n".join(lines)


def label_conv_rows(data: dict) -> list[dict]:
    """Per case: median times of the three variants, the median and range of the per-round ratios to the original,
    and the saved bytes."""
    rows = []
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        row = {"case": info["case"], "saved": info["saved_bytes"], "rounds": len(info["times"]["original"]["wall_s"])}
        for name, times in info["times"].items():
            row[f"{name}_ms"] = _median(times["wall_s"]) * 1e3
        for name in ("spadenorm", "spadenorm_map", "spadenorm_fused"):
            for kind in ("wall_s", "cpu_s"):
                values = info.get(f"{name}_{kind}_ratios")
                if values:
                    row[f"{name}_{kind}"] = (_median(values), min(values), max(values))
        if "spadenorm_fused" in info["times"]:
            fused, ids = (info["times"][v]["wall_s"] for v in ("spadenorm_fused", "spadenorm"))
            row["spadenorm_fused_over_ids"] = [a / b for a, b in zip(fused, ids, strict=True)]
        rows.append(row)
    return rows


def label_conv_table(data: dict) -> str:
    """SPADE layers and generators fed class ids against the original formulation: time and bytes relative to it."""
    mib = 2.0**20
    lines = [
        "| case (forward + backward) | original (ms) | spadenorm, one-hot map (ms) | spadenorm, class ids (ms) "
        "| ids / original, wall clock: median (range) | ids / original, CPU time | map / original, wall clock "
        "| saved for backward: original / map / ids (MiB) | ids / original, bytes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    fused = []
    for r in label_conv_rows(data):
        saved = [r["saved"][v] / mib for v in ("original", "spadenorm_map", "spadenorm")]
        wall, cpu, wall_map = r["spadenorm_wall_s"], r["spadenorm_cpu_s"], r["spadenorm_map_wall_s"]
        lines.append(
            f"| {r['case']} | {r['original_ms']:.1f} | {r['spadenorm_map_ms']:.1f} | {r['spadenorm_ms']:.1f} "
            f"| {wall[0]:.2f}x ({wall[1]:.2f} to {wall[2]:.2f}) | {cpu[0]:.2f}x | {wall_map[0]:.2f}x "
            f"| {saved[0]:.1f} / {saved[1]:.1f} / {saved[2]:.1f} | {saved[2] / saved[0]:.2f}x |"
        )
        if "spadenorm_fused_wall_s" in r:
            per_round = r["spadenorm_fused_over_ids"]
            fused.append(
                f"| {r['case']} | {r['spadenorm_ms']:.1f} | {r['spadenorm_fused_ms']:.1f} "
                f"| {_median(per_round):.2f}x ({min(per_round):.2f} to {max(per_round):.2f}) |"
            )
    if fused:
        lines += [
            "",
            "gamma and beta from one convolution (`fuse_gamma_beta=True`), fed the ids, against two convolutions:",
            "",
            "| case (forward + backward) | two convolutions (ms) | one, 2C outputs (ms) "
            "| one / two, wall clock: median (range) |",
            "|---|---:|---:|---:|",
            *fused,
        ]
    return "\n".join(lines)


def rounds_note(data: dict) -> str:
    rounds = sorted({b["stats"]["rounds"] for b in data["benchmarks"]})
    iqr = [b["stats"]["iqr"] / b["stats"]["median"] for b in data["benchmarks"] if b["stats"]["median"] > 0]
    span = f"{rounds[0]}" if rounds[0] == rounds[-1] else f"{rounds[0]} to {rounds[-1]}"
    return (
        f"{len(data['benchmarks'])} benchmarks, {span} rounds each; "
        f"interquartile range {min(iqr):.0%} to {max(iqr):.0%} of the median."
    )


# ------------------------------------------------------------------------------------------------------------ plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, s: dict[str, str], path: Path) -> str:
    fig.text(0.01, 0.005, stamp_text(s), fontsize=6.5, family="monospace", va="bottom", color="0.3")
    fig.savefig(path, dpi=80)
    _pyplot().close(fig)
    return path.name


def _op_and_layer_rows(data: dict) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    op, layer = [], []
    for group, impls in groups(data).items():
        (layer if group.startswith("SPADE layer") else op).append((group.removeprefix("SPADE layer "), impls))
    return op, layer


def _by_norm(rows: list[tuple[str, dict]]) -> tuple[list[str], dict[str, list[dict]]]:
    shapes: list[str] = []
    per_norm: dict[str, list[dict]] = defaultdict(list)
    for name, impls in rows:
        norm, shape = name.split(" ", 1)
        if shape not in shapes:
            shapes.append(shape)
        per_norm[norm].append(impls)
    return shapes, per_norm


def plot_cpu(data: dict, s: dict[str, str], figures: Path) -> list[str]:
    plt = _pyplot()
    op, layer = _op_and_layer_rows(data)
    written = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), squeeze=False)
    for ax, (title, rows) in zip(
        axes[0],
        [("normalize-and-modulate op", op), ("SPADE layer, convs included", layer)],
        strict=True,
    ):
        if not rows:
            ax.set_visible(False)
            continue
        shapes, per_norm = _by_norm(rows)
        width = 0.8 / len(per_norm)
        for k, (norm, impls) in enumerate(per_norm.items()):
            speedup = [ms(i["original"]) / ms(i["spadenorm"]) for i in impls]
            xs = [j + (k - (len(per_norm) - 1) / 2) * width for j in range(len(shapes))]
            bars = ax.bar(xs, speedup, width, label=f"{norm} statistics")
            ax.bar_label(bars, fmt="%.2f", fontsize=6.5)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylim(0, 1.2 * ax.get_ylim()[1])
        ax.set_xticks(range(len(shapes)), [sh.replace(" ", "\n") for sh in shapes], fontsize=7.5)
        ax.set_ylabel("speedup: original time / spadenorm time")
        ax.set_title(f"CPU forward+backward, batch 1: {title}", fontsize=9.5)
        ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    written.append(_finish(fig, s, figures / "cpu_speedup.png"))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), squeeze=False)
    for ax, (title, rows) in zip(axes[0], [("normalize-and-modulate op", op), ("SPADE layer", layer)], strict=True):
        if not rows:
            ax.set_visible(False)
            continue
        rows = [r for r in rows if r[0].startswith("instance")] or rows
        shapes, per_norm = _by_norm(rows)
        impls = next(iter(per_norm.values()))
        act = [i["spadenorm"]["extra_info"]["activation_bytes"] for i in impls]
        for k, impl in enumerate(("original", "spadenorm")):
            values = [i[impl]["extra_info"]["saved_bytes"] / a for i, a in zip(impls, act, strict=True)]
            xs = [j + (k - 0.5) * 0.4 for j in range(len(shapes))]
            bars = ax.bar(xs, values, 0.4, label=impl)
            ax.bar_label(bars, fmt="%.2f", fontsize=6.5)
        ax.set_ylim(0, 1.2 * ax.get_ylim()[1])
        ax.set_xticks(range(len(shapes)), [sh.replace(" ", "\n") for sh in shapes], fontsize=7.5)
        ax.set_ylabel("saved for backward / activation size")
        ax.set_title(f"saved for backward, instance statistics: {title}", fontsize=9.5)
        ax.legend(fontsize=8, loc="upper right", ncol=2)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    written.append(_finish(fig, s, figures / "cpu_saved_bytes.png"))
    return written


def plot_model(data: dict, s: dict[str, str], figures: Path) -> list[str]:
    plt = _pyplot()
    rows = model_rows(data)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    impls = [impl for impl in ("original", "spadenorm_map", "spadenorm") if f"{impl}_wall_s" in rows[0]]
    width = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        xs = [j + (k - (len(impls) - 1) / 2) * width for j in range(len(rows))]
        medians = [r[f"{impl}_wall_s"] for r in rows]
        spread = [
            [m - min(r["times"][impl]["wall_s"]) for m, r in zip(medians, rows, strict=True)],
            [max(r["times"][impl]["wall_s"]) - m for m, r in zip(medians, rows, strict=True)],
        ]
        bars = ax_t.bar(xs, medians, width, label=impl, yerr=spread, capsize=3, error_kw={"lw": 0.8})
        ax_t.bar_label(bars, fmt="%.2f", fontsize=7, label_type="center")
        bars = ax_m.bar(xs, [r[f"{impl}_step_saved_bytes"] / 2**20 for r in rows], width, label=impl)
        ax_m.bar_label(bars, fmt="%.1f", fontsize=7)
    for ax, label in (
        (ax_t, "training step, wall clock (s): median, min to max"),
        (ax_m, "saved for backward, G step (MiB)"),
    ):
        ax.set_xticks(range(len(rows)), [f"SPADE norm: {r['norm']}" for r in rows], fontsize=8)
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.2 * ax.get_ylim()[1])
        ax.legend(fontsize=8, loc="upper left", ncol=len(impls))
    info = data["benchmarks"][0]["extra_info"]
    fig.suptitle(
        f"Reference GAN training step on CPU: G ngf {info['ngf']} + D ndf {info['ndf']}, {info['label_nc']} classes, "
        f"{info['crop']}x{info['crop']}, batch {info['batch']}",
        fontsize=9.5,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return [_finish(fig, s, figures / "cpu_model_step.png")]


def plot_gpu(data: dict, s: dict[str, str], figures: Path) -> list[str]:
    plt = _pyplot()
    info = data["benchmarks"][0]["extra_info"]
    copy_bw = info["copy_bandwidth_gbs"]
    series: dict[tuple[str, str], dict[str, list[tuple[str, float]]]] = defaultdict(lambda: defaultdict(list))
    speed: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for group, impls in groups(data).items():
        extra = next(iter(impls.values()))["extra_info"]
        if "mode" not in extra or "spadenorm" not in impls:
            continue
        shape = group.rsplit(" ", 2)[0]  # "<dataset> <layer> <CxHxW>"
        for impl, bench in impls.items():
            series[(extra["dtype"], extra["mode"])][impl].append((shape, bench["extra_info"]["gbs"]))
        if "eager" in impls:
            speed[f"{extra['dtype']} {extra['mode']}"].append((shape, ms(impls["eager"]) / ms(impls["spadenorm"])))
    written = []
    modes = ("forward", "backward", "forward+backward")
    keys = sorted(series, key=lambda k: (k[0], modes.index(k[1]) if k[1] in modes else len(modes)))
    colours = {"eager": "C0", "compiled": "C1", "spadenorm": "C2", "two-phase": "C3"}
    if keys:
        fig, axes = plt.subplots(len(keys), 1, figsize=(11, 2.8 * len(keys) + 0.6), squeeze=False)
        for ax, key in zip(axes[:, 0], keys, strict=True):
            for impl, points in series[key].items():
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=impl, color=colours.get(impl))
            ax.set_ylim(0, 1.1 * max(copy_bw, ax.get_ylim()[1]))
            ax.axhline(copy_bw, color="k", ls="--", lw=1, label=f"copy bandwidth {copy_bw:.0f} GB/s")
            ax.set_ylabel("GB/s (ideal bytes)")
            ax.set_title(f"{key[0]} {key[1]}", fontsize=9)
            ax.tick_params(axis="x", labelsize=7, rotation=30)
            ax.legend(fontsize=7, ncol=5)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        written.append(_finish(fig, s, figures / "gpu_bandwidth.png"))
    if speed:
        fig, ax = plt.subplots(figsize=(11, 4.2))
        for label, points in sorted(speed.items()):
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylabel("speedup over eager original formulation")
        ax.tick_params(axis="x", labelsize=7, rotation=30)
        ax.legend(fontsize=7)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        written.append(_finish(fig, s, figures / "gpu_speedup.png"))
    return written


# ---------------------------------------------------------------------------------------------------------- sections
def _images(names: list[str], figures: Path, page: Path | None) -> str:
    base = Path(figures).resolve()
    rel = base.relative_to(page.resolve().parent) if page is not None else base
    return "\n\n".join(f"![{name.removesuffix('.png').replace('_', ' ')}]({rel.as_posix()}/{name})" for name in names)


def cpu_section(path: str, command: str | None, figures: Path | None, page: Path | None) -> str:
    data = subset(load(path), lambda b: not is_model_step(b) and not is_label_conv(b))
    s = stamp(data, command)
    parts = [stamp_markdown(s), "", summarize.summarize_cpu(data), "", rounds_note(data)]
    if figures is not None:
        parts += ["", _images(plot_cpu(data, s, figures), figures, page)]
    return "\n".join(parts)


def model_section(path: str, command: str | None, figures: Path | None, page: Path | None) -> str:
    data = subset(load(path), is_model_step)
    if not data["benchmarks"]:
        raise ValueError(f"{path}: no model-step benchmarks")
    s = stamp(data, command)
    parts = [stamp_markdown(s), "", model_table(data), "", rounds_note(data)]
    if figures is not None:
        parts += ["", _images(plot_model(data, s, figures), figures, page)]
    return "\n".join(parts)


def label_conv_section(paths: list[str], command: str | None) -> str:
    """The label-lookup tables from one or more JSON files of ``test_cpu_label_conv.py`` (parts of one suite run
    separately: the stamp is the first file's, the command lists every file's)."""
    parts_data = [subset(load(path), is_label_conv) for path in paths]
    data = {**parts_data[0], "benchmarks": [b for part in parts_data for b in part["benchmarks"]]}
    if not data["benchmarks"]:
        raise ValueError(f"{', '.join(paths)}: no label-lookup benchmarks")
    if command is None and len(paths) > 1:
        commands = dict.fromkeys(b["extra_info"].get("command", "?") for b in data["benchmarks"])
        command = " ; ".join(commands)
    crossover = subset(data, lambda b: b["extra_info"]["benchmark"] == "label_conv_crossover")
    fusion = subset(data, lambda b: b["extra_info"]["benchmark"] == "label_conv_fusion")
    models = subset(data, lambda b: b["extra_info"]["benchmark"] in ("label_conv_layer", "label_conv_generator"))
    parts = [stamp_markdown(stamp(data, command)), ""]
    if models["benchmarks"]:
        parts += [label_conv_table(models), ""]
    if crossover["benchmarks"]:
        first = crossover["benchmarks"][0]["extra_info"]["shape"]
        parts += [
            f"The lookup against the convolution of the one-hot map, one SPADE layer {'x'.join(map(str, first))}, "
            "fed the same ids:",
            "",
            crossover_table(crossover),
            "",
        ]
    if fusion["benchmarks"]:
        parts += [
            "gamma and beta from one convolution with 2C outputs against two, the layers fed the ids:",
            "",
            fusion_table(fusion),
            "",
        ]
    return "\n".join([*parts, rounds_note(data)])


def gpu_section(path: str | None, command: str | None, figures: Path | None, page: Path | None) -> str:
    if path is None:
        return NO_GPU_TEXT
    data = load(path)
    s = stamp(data, command or "benchmarks/gpu_suite.sh")
    parts = [stamp_markdown(s), "", summarize.summarize_gpu(data), "", rounds_note(data)]
    if figures is not None:
        parts += ["", _images(plot_gpu(data, s, figures), figures, page)]
    return "\n".join(parts)


def replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- report:{name}:begin -->\n)(?:.*?\n)?(<!-- report:{name}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"the page has no <!-- report:{name}:begin/end --> markers")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", help="JSON of test_cpu_modulated_norm.py")
    parser.add_argument("--cpu-command", help="the command that produced --cpu")
    parser.add_argument("--model", help="JSON of test_cpu_model_step.py")
    parser.add_argument("--model-command", help="overrides the command recorded in the model JSON")
    parser.add_argument("--label-conv", nargs="+", help="JSON of test_cpu_label_conv.py (one or more parts)")
    parser.add_argument("--label-conv-command", help="overrides the command recorded in the label-conv JSON")
    parser.add_argument("--gpu", help="JSON of test_gpu_kernels.py (gpu_bench.json)")
    parser.add_argument("--gpu-command", help="the command that produced --gpu (default benchmarks/gpu_suite.sh)")
    parser.add_argument("--figures", default="docs/figures", help="where the PNGs go (default docs/figures)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--write", metavar="PAGE", help="update the marked sections of PAGE in place")
    args = parser.parse_args(argv)

    figures = None if args.no_plots else Path(args.figures)
    if figures is not None:
        figures.mkdir(parents=True, exist_ok=True)
    page = Path(args.write) if args.write else None
    sections = {"gpu": gpu_section(args.gpu, args.gpu_command, figures, page)}
    if args.cpu:
        sections["cpu"] = cpu_section(args.cpu, args.cpu_command, figures, page)
    if args.model:
        sections["model"] = model_section(args.model, args.model_command, figures, page)
    if args.label_conv:
        sections["label-conv"] = label_conv_section(args.label_conv, args.label_conv_command)

    if page is None:
        for name, body in sections.items():
            print(f"<!-- {name} -->\n{body}\n")
        return
    text = page.read_text()
    for name, body in sections.items():
        text = replace_section(text, name, body)
    page.write_text(text)
    print(f"updated sections {sorted(sections)} of {page}", file=sys.stderr)


if __name__ == "__main__":
    main()
