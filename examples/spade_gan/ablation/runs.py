"""The ablation of ``ablation.py``: one training run per (generator, seed), then its scores, then the summary table.

Each run is an ordinary ``train_spade.py`` run (same defaults, same budget) with ``--generator`` and ``--seed`` set,
in ``<root>/<generator>/seed<k>``; a run whose ``ablation.json`` exists (with the same training arguments) is not
repeated, so an interrupted ablation continues where it stopped. Per run: the held-out alignment of the training
report, the wash-away probe of :mod:`spade_gan.ablation.washaway` (its image grid saved as ``washaway.png``), FID /
KID when Inception weights are given, the generator's parameter count and the mean training step time.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import build_dataset, colorize_labels
from ..images import save_grid
from ..models.baselines import parameter_count
from ..scoring.generator_scores import SYNTHETIC_EVAL_IMAGES, QualityOptions, score_generator
from ..synthesis.inference import generator_function
from ..synthesis.loading import load_model
from ..training.checkpoints import LATEST
from ..training.config import config_from_args
from ..training.logs import read_log
from ..training.run import train
from .washaway import washaway_probe

RESULT_FILE = "ablation.json"
"""Per-run results, written last (atomically) when the run is complete."""


def run_one(
    root: Path, generator: str, seed: int, train_args: Sequence[str], inception: nn.Module | None = None
) -> dict[str, Any]:
    """Train (unless done) and score one ablation run; returns (and saves) its results."""
    out = root / generator / f"seed{seed}"
    done = out / RESULT_FILE
    if done.is_file():
        result = json.loads(done.read_text())
        if result.get("train_args") != list(train_args):
            raise ValueError(
                f"{out} was trained with the arguments {result.get('train_args')}, not {list(train_args)}: pass "
                "another --out, or delete that run folder to retrain it"
            )
        return result
    cfg = config_from_args([*train_args, "--generator", generator, "--seed", str(seed), "--out", str(out)])
    if (out / "checkpoints" / LATEST).is_file():
        cfg.resume = "latest"
    train(cfg)
    result = score_run(out, inception)
    result.update(generator=generator, seed=seed, train_args=list(train_args))
    tmp = out / f".{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, done)
    return result


def score_run(out: Path, inception: nn.Module | None) -> dict[str, Any]:
    """The scores of the finished run in ``out`` (see the module docstring)."""
    model = load_model(out / "checkpoints" / LATEST)
    spec, config = model.spec, model.config or {}
    alignment = json.loads((out / "alignment.json").read_text())["generated"]
    records = read_log(out / "log.jsonl")
    result: dict[str, Any] = {
        "accuracy": alignment["accuracy"],
        "miou": alignment["miou"],
        "parameters": parameter_count(model.generator),
        "steps": max(r["step"] for r in records),  # the run logs its last step
        "step_time_s": step_time(records),
        "norm": spec.norm,
        "amp": config.get("amp"),
    }
    size = model.generator.output_size
    probe, labels, images = washaway_probe(
        model.generator, label_nc=spec.label_nc, contain_dontcare=spec.contain_dontcare, size=size, alignment=True
    )
    result["washaway"] = probe
    save_grid([colorize_labels(labels[:, None], spec.label_nc), images], out / "washaway.png")
    if inception is not None:
        val = build_dataset(
            "synthetic",
            split="val",
            crop_size=spec.crop_size,
            aspect_ratio=spec.aspect_ratio,
            num_images=config.get("eval_images") or SYNTHETIC_EVAL_IMAGES,
        )
        scores = score_generator(generator_function(model, 0, "cpu"), val, QualityOptions(inception=inception))
        result.update(fid=scores["fid"], kid_mean=scores["kid_mean"], kid_std=scores["kid_std"])
    return result


def step_time(records: Sequence[dict[str, Any]]) -> float:
    """Mean seconds per training step from a ``log.jsonl``: elapsed time over steps between consecutive loss lines
    of the same process (a resume restarts the clock; the first interval of each process, with its warm-up, and the
    evaluation lines are left out).

    Example:
        >>> step_time([{"step": 10, "elapsed_s": 6.0}, {"step": 20, "elapsed_s": 11.0}, {"step": 30, "elapsed_s": 16.0},
        ...            {"step": 40, "elapsed_s": 7.0}, {"step": 50, "elapsed_s": 12.0}])
        0.5
    """
    timed = [r for r in records if "elapsed_s" in r]
    seconds = steps = 0.0
    for before, after in itertools.pairwise(timed):
        if after["elapsed_s"] > before["elapsed_s"] and after["step"] > before["step"]:
            seconds += after["elapsed_s"] - before["elapsed_s"]
            steps += after["step"] - before["step"]
    if not steps:
        raise ValueError("log.jsonl: fewer than two timed lines of one process; no step time")
    return seconds / steps


def summarise(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per generator: mean, min and max over seeds of every score."""
    rows = []
    for generator in dict.fromkeys(r["generator"] for r in results):
        runs = [r for r in results if r["generator"] == generator]
        row: dict[str, Any] = {"generator": generator, "seeds": [r["seed"] for r in runs]}
        for key, pick in _COLUMNS.items():
            values = [v for v in (pick(r) for r in runs) if v is not None]
            if values:
                row[key] = {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}
        row["parameters"] = runs[0]["parameters"]
        rows.append(row)
    return rows


_COLUMNS = {
    "accuracy": lambda r: r["accuracy"],
    "miou": lambda r: r["miou"],
    "uniform_accuracy": lambda r: r["washaway"].get("accuracy"),
    "uniform_pairwise_l1": lambda r: r["washaway"]["pairwise_l1"],
    "fid": lambda r: r.get("fid"),
    "kid_mean": lambda r: r.get("kid_mean"),
    "step_time_s": lambda r: r["step_time_s"],
}


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary as a Markdown table: ``mean (min-max)`` per score over the seeds."""
    has_fid = any("fid" in row for row in rows)
    header = ["generator", "params", "seeds", "accuracy", "mIoU", "uniform-map accuracy", "uniform-map pairwise L1"]
    header += ["FID", "KID"] if has_fid else []
    header += ["s / step"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["generator"],
            f"{row['parameters'] / 1e6:.2f} M",
            str(len(row["seeds"])),
            _cell(row, "accuracy", 3),
            _cell(row, "miou", 3),
            _cell(row, "uniform_accuracy", 3),
            _cell(row, "uniform_pairwise_l1", 3),
        ]
        if has_fid:
            cells += [_cell(row, "fid", 1), _cell(row, "kid_mean", 4)]
        cells.append(_cell(row, "step_time_s", 3))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(row: dict[str, Any], key: str, digits: int) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    return f"{value['mean']:.{digits}f} ({value['min']:.{digits}f}-{value['max']:.{digits}f})"


def device_name() -> str:
    """The CPU or GPU the ablation ran on, for the report."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {torch.get_num_threads()} threads"
    except OSError:
        pass
    return f"CPU, {torch.get_num_threads()} threads"
