"""The GPU benchmark suite's CPU-side parts: report figures, case matrix and time budget, path overrides, label maps,
preflight checks and the shell script's syntax. The measurements themselves need a GPU (benchmarks/gpu_suite.sh)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks package of this checkout (python -m pytest already has it)
    sys.path.append(str(ROOT))

from benchmarks import gpu_preflight, gpu_timing, summarize  # noqa: E402
from benchmarks import test_gpu_kernels as suite  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "gpu_suite.sh"


# ----------------------------------------------------------------------------------------------------------- report
def _bench(group: str, impl: str, median_us: float, **info: object) -> dict:
    """One pytest-benchmark entry as test_gpu_kernels.py records it (op time 3x the device time)."""
    kind, layer, shape, dtype, mode = group.split(" ")
    if kind.startswith("clade-"):
        info = {"labels": kind.removeprefix("clade-"), "modulation": "class", **info}
        kind = "instance"
    dims = [int(d) for d in shape.split("x")]
    numel = dims[0] * dims[1] * dims[2] * dims[3]
    element_size = {"fp32": 4, "bf16": 2}[dtype]
    extra = {
        "device": "cuda",
        "device_name": "Test GPU",
        "torch": "2.11.0",
        "triton": "3.6.0",
        "step": "core",
        "kind": kind,
        "modulation": "spatial",
        "labels": None,
        "layer": layer,
        "shape": dims,
        "dtype": dtype,
        "mode": mode,
        "impl": impl,
        "path": impl.removeprefix("spadenorm ") if impl.startswith("spadenorm ") else "rule",
        "numel": numel,
        "element_size": element_size,
        "ideal_bytes": summarize.ideal_bytes_per_element(mode, element_size) * numel,
        "device_ms": {
            "median_ms": median_us / 1e3,
            "q1_ms": median_us / 1e3,
            "q3_ms": median_us / 1e3,
            "min_ms": median_us / 1e3,
            "max_ms": median_us / 1e3,
            "reps": 25,
            "host_ahead": 1.0,
            "lead_ms": 0.1,
        },
        "rel_err": {"y": 1e-3, "dx": 2e-3, "dgamma": 1e-3},
        "copy_bandwidth_gbs": 3000.0,
        **info,
    }
    stats = {"median": 3 * median_us / 1e6, "iqr": 1e-6, "rounds": 10}
    return {"group": group, "name": f"test[{group}-{impl}]", "stats": stats, "extra_info": extra}


UP1 = "instance up_1 8x512x64x64 bf16 forward"
NUMEL = 8 * 512 * 64 * 64


def _data() -> dict:
    clade = "clade-blocky151 up_1 8x512x64x64 bf16 forward"
    benches = [
        _bench(UP1, "spadenorm", 50.0),
        _bench(UP1, "eager", 150.0),
        _bench(UP1, "compiled", 75.0),
        _bench(UP1, "spadenorm rows-persistent", 40.0),
        _bench(UP1, "spadenorm split-row", 60.0),
        _bench(clade, "clade", 25.0, ideal_bytes=2 * NUMEL * 2),
    ]
    return {"datetime": "2030-01-01T00:00:00", "benchmarks": benches, "gpu_env": {"copy_bandwidth_gbs": 4000.0}}


def test_report_figures_match_hand_computed_values():
    cases = {c["impl"]: c for c in summarize.gpu_cases(_data())}
    ours = cases["spadenorm"]
    # forward, bf16: 4 tensors x 2 bytes = 8 bytes per element; 134217728 bytes in 50 us
    assert ours["bytes_per_element"] == 8
    assert ours["ideal_bytes"] == 134_217_728
    assert ours["gbs"] == pytest.approx(2684.35456)
    assert ours["fraction_of_copy"] == pytest.approx(2684.35456 / 4000)
    assert ours["vs_eager"] == pytest.approx(3.0)
    assert ours["vs_compiled"] == pytest.approx(1.5)
    assert ours["op_us"] == pytest.approx(150.0)
    assert cases["eager"]["vs_eager"] is None  # a baseline is not compared with itself
    clade = cases["clade"]
    assert clade["bytes_per_element"] == 4
    assert clade["gbs"] == pytest.approx(2 * NUMEL * 2 / 25e-6 / 1e9)
    assert clade["vs_spatial"] == pytest.approx(2.0)  # spatial SPADE's 50 us over CLADE's 25 us


def test_copy_bandwidth_falls_back_to_the_benchmarks_own():
    data = _data()
    assert summarize.copy_bandwidth_gbs(data) == 4000.0
    del data["gpu_env"]
    assert summarize.copy_bandwidth_gbs(data) == 3000.0
    assert summarize.gpu_cases(data)[0]["fraction_of_copy"] == pytest.approx(2684.35456 / 3000)


def test_markdown_tables():
    markdown, summary = summarize.gpu_report(
        _data(), [{"step": "core", "status": "ok", "exit": "0", "seconds": "30", "limit": "40"}]
    )
    baseline_row = next(line for line in markdown.splitlines() if line.startswith("| instance | up_1"))
    cells = [c.strip() for c in baseline_row.strip("|").split("|")]
    # statistics, layer, shape, dtype, pass, B/elem, spadenorm us, GB/s, of copy, op us, eager, vs, compiled, vs, err
    assert cells[5:14] == ["8", "50.0", "2684", "67%", "150.0", "150.0", "3.00x", "75.0", "1.50x"]
    paths_row = next(line for line in markdown.splitlines() if "| **40.0 (84%)** |" in line)
    assert paths_row.rstrip().endswith("| rows-persistent |")
    assert "| core | ok | 0 | 30 | 40 |" in markdown
    assert "| core | 6 | 0.0 | 0.0 |" in markdown  # cases measured, seconds preparing and measuring
    assert "4000 GB/s" in markdown
    assert len(summary["cases"]) == 6
    assert summary["flagged"] == []


def test_flags_host_gaps_and_high_errors():
    data = _data()
    group = "instance up_1 8x512x64x64 bf16 forward+backward"
    data["benchmarks"] += [_bench(group, "eager", 300.0), _bench(group, "spadenorm", 100.0, rel_err={"y": 0.5})]
    data["benchmarks"][0]["extra_info"]["device_ms"]["host_ahead"] = 0.8
    notes = summarize.flagged(summarize.gpu_cases(data))
    assert any("host fell behind" in n and "20%" in n for n in notes)
    assert any("relative error of y 5.0e-01" in n for n in notes)


def test_outputs_written_and_readable_by_report(tmp_path):
    data = _data()
    env = {"device_name": "Test GPU", "sm_count": 132, "l2_bytes": 60 * 2**20, "copy_bandwidth_gbs": 4000.0}
    parts = []
    for i, bench in enumerate(data["benchmarks"]):
        parts.append(tmp_path / f"bench_{i}.json")
        parts[-1].write_text(json.dumps({"datetime": data["datetime"], "benchmarks": [bench]}))
    interrupted = {"group": UP1, "name": "cut", "stats": {"median": 1.0}, "extra_info": {"device": "cuda"}}
    parts[-1].write_text(
        json.dumps({"datetime": data["datetime"], "benchmarks": [data["benchmarks"][-1], interrupted]})
    )
    (tmp_path / "device.json").write_text(json.dumps(env))
    steps = tmp_path / "steps.tsv"
    steps.write_text("step\tstatus\texit\tseconds\tlimit\ncore\tcut by its limit\t124\t40\t40\n")
    digest = summarize.write_gpu_outputs([*parts, tmp_path / "missing.json"], tmp_path, tmp_path / "device.json", steps)
    assert "step core: cut by its limit (40 s of 40)" in digest
    merged = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert len(merged["benchmarks"]) == 6
    assert merged["gpu_env"]["sm_count"] == 132
    assert "132 SMs" in (tmp_path / "gpu_summary.md").read_text()
    assert json.loads((tmp_path / "gpu_summary.json").read_text())["copy_bandwidth_gbs"] == 4000.0

    from benchmarks import report

    section = report.gpu_section(str(tmp_path / "gpu_bench.json"), None, None, None)
    assert "| instance | up_1 |" in section


# ------------------------------------------------------------------------------------------------------ case matrix
ALL = [case for cases in suite.STEPS.values() for case in cases if isinstance(case, suite.Case)]
LOOKUP = suite.STEPS["label_conv"]


def test_case_matrix_covers_kinds_batches_dtypes_shapes_and_passes():
    assert {c.kind for c in ALL} == {"instance", "batch", "sync_batch", "group"}
    assert {c.batch for c in ALL} >= {1, 8}
    assert {c.dtype for c in ALL} == {"fp32", "bf16", "fp16"}
    assert {c.mode for c in ALL} == set(suite.MODES)
    fmiddle = {name for name, *_ in suite.ADE20K_256_FMIDDLE}
    core = suite.STEPS["core"]
    for batch in (1, 8):
        assert fmiddle <= {c.layer for c in core if c.batch == batch}
    assert {name for name, *_ in suite.ADE20K_256} <= {c.layer for c in core if c.batch == 8}
    assert {"up_0", "up_1", "up_2", "up_3"} <= {c.layer for c in core if c.batch == 1}
    for kind in ("batch", "sync_batch", "group"):
        assert {(c.batch, c.dtype) for c in suite.STEPS["kinds"] if c.kind == kind} >= {
            (8, "fp32"),
            (8, "bf16"),
            (1, "bf16"),
        }
    assert {c.path for c in suite.STEPS["paths"]} == set(suite.ROW_PATHS) | set(suite.GROUP_ROW_PATHS)
    assert {(c.labels, c.mode) for c in suite.STEPS["clade"] if c.impl == "clade"} == {
        (labels, mode) for labels in gpu_timing.LABEL_MAPS for mode in suite.MODES
    }
    assert {c.kind for c in suite.STEPS["compiled"]} == {"instance", "batch", "group"}
    ids = [c.id for cases in suite.STEPS.values() for c in cases]
    assert len(ids) == len(set(ids))


def test_lookup_cases_cover_the_generators_the_layer_and_the_op_against_the_original():
    """Every model of the label-lookup step is timed for the original formulation and for the class ids."""
    assert all(isinstance(case, suite.LookupCase) for case in LOOKUP)
    models = {c.model for c in LOOKUP}
    assert {f"generator {name}" for name in suite.GENERATORS} <= models
    assert {"layer up_3", "op up_3"} <= models
    for model in models:
        impls = {c.impl for c in LOOKUP if c.model == model}
        assert {"original", "spadenorm ids"} <= impls, model
    assert {c.impl for c in LOOKUP if c.model == "layer up_3"} >= {"spadenorm map", "spadenorm ids fused"}
    assert {c.mode for c in LOOKUP if c.model.startswith("op")} == {"forward", "backward"}
    assert LOOKUP[0].model == "generator ade20k_256"  # most important first: a cut step keeps it


def test_every_compared_case_has_its_reference_row():
    """Paths and compiled baselines are reported next to the rule's case, CLADE next to spatial SPADE."""
    rule = {c.row for c in ALL if c.impl == "spadenorm" and c.path == "rule"}
    assert all(c.row in rule for c in ALL if c.impl == "compiled" or c.path != "rule")
    for case in suite.STEPS["clade"]:
        assert dataclasses.replace(case, labels=None).row in rule


def _limits() -> dict[str, int]:
    text = SCRIPT.read_text()
    limits = {m[0]: int(m[1]) for m in re.findall(r"^(?:if ! )?run_step (\S+) (\d+) ", text, re.M)}
    limits.update({m[0]: int(m[1]) for m in re.findall(r"^bench \d+ (\S+) (\d+)$", text, re.M)})
    return limits


def test_steps_fit_their_limits_and_the_run_fits_seven_minutes():
    """From cold caches: the pre-compile step compiles every variant within its limit, and each timed step, reading
    the caches it filled, within its own; the limits add up to under seven minutes of device time."""
    pytest.importorskip("triton")
    from benchmarks import gpu_precompile
    from benchmarks.variants import recording

    limits = _limits()
    assert list(limits) == ["preflight", "precompile", "cuda-tests", *suite.STEPS]
    for name, cases in suite.STEPS.items():
        assert suite.estimated_seconds(cases) <= limits[name], name
    cuda_tests: set = set()
    with recording(gpu_precompile.H100, cuda_tests):
        for group in gpu_precompile.cuda_test_groups():
            gpu_precompile.run_group(group)
    assert suite.estimated_precompile_seconds(ALL, len(cuda_tests)) <= limits["precompile"]
    assert sum(limits.values()) <= 7 * 60


def test_the_precompile_step_covers_every_case_and_starts_with_the_odd_shape():
    pytest.importorskip("triton")
    from benchmarks import gpu_precompile

    groups = gpu_precompile.groups(ALL)
    assert {gpu_precompile.group_of(c) for c in ALL if c.impl in ("spadenorm", "clade")} == set(groups)
    assert gpu_precompile.CUDA_TEST_SHAPES[0] == (2, 3, 1000, 1001)
    assert list(_cuda_test_shapes()) == gpu_precompile.CUDA_TEST_SHAPES  # the tests' own order: odd shape first


def _cuda_test_shapes() -> list[tuple[int, ...]]:
    import ast

    source = (ROOT / "tests" / "test_triton.py").read_text()
    assignment = next(
        n for n in ast.parse(source).body if isinstance(n, ast.Assign) and n.targets[0].id == "CUDA_SHAPES"
    )
    return ast.literal_eval(assignment.value)


def test_the_suite_calls_the_interpreter_it_is_given():
    text = SCRIPT.read_text()
    assert 'PY="${PYTHON:-python3}"' in text
    assert not re.search(r"(^|[\s(])python3? (-m|benchmarks)", text, re.M)  # every call goes through "$PY"


def test_ideal_bytes():
    case = suite.Case("core", "instance", "up_3", 8, "fp32", "forward+backward", "spadenorm")
    assert suite.ideal_bytes(case) == 9 * 8 * 128 * 256 * 256 * 4
    clade = suite.Case("clade", "instance", "up_1", 8, "bf16", "forward", "clade", labels="blocky35")
    # x read and y written (2 bytes each), int64 labels per pixel, two 35 x 512 tables
    assert suite.ideal_bytes(clade) == 2 * NUMEL * 2 + 8 * 64 * 64 * 8 + 2 * 35 * 512 * 2


def test_suite_script_parses():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    subprocess.run([bash, "-n", str(SCRIPT)], check=True)


# ----------------------------------------------------------------------------------------------------- path override
@pytest.mark.parametrize("mode", ["forward", "backward", "forward+backward"])
def test_forced_path_holds_for_forward_and_backward(mode):
    """The library's launch overrides are in force around the timed forward and backward, and restored after."""
    pytest.importorskip("triton")
    from spadenorm.backends.triton import plan

    seen: dict[str, list] = {"forward": [], "backward": []}

    class Recorder(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            seen["forward"].append((plan.OVERRIDES.row_kernels, plan.OVERRIDES.row_strategy))
            return x * 2

        @staticmethod
        def backward(ctx, dy):
            seen["backward"].append((plan.OVERRIDES.row_kernels, plan.OVERRIDES.row_strategy))
            return dy * 2

    x = torch.randn(3, requires_grad=True)
    before = dataclasses.astuple(plan.OVERRIDES)
    forced = (True, "swept")
    prepare, run = suite.make_step(lambda: Recorder.apply(x), (x,), torch.ones(3), mode, suite.PATHS["rows-swept"])
    arg = prepare()
    assert seen["forward"] == ([forced] if mode == "backward" else [])  # the untimed forward of a backward pass
    run(arg)
    assert seen["forward"] == [forced]
    assert seen["backward"] == ([] if mode == "forward" else [forced])
    assert dataclasses.astuple(plan.OVERRIDES) == before  # restored after the call


def test_describe_plan_reads_the_launch_plan_under_the_forced_path():
    """What the suite records as the paths of a case is what the library's launch plan runs (here, under the
    interpreter, where per-sample rows always take the row kernels)."""
    pytest.importorskip("triton")
    x = torch.zeros(2, 64, 4, 4)
    assert suite.describe_plan(x, "instance", False, {}) == "rows resident"
    assert suite.describe_plan(x, "instance", True, {}) == "rows resident"
    assert suite.describe_plan(x, "instance", False, {"row_kernels": False}) == "split-row"
    assert suite.describe_plan(x, "group", False, {"row_kernels": False}) == "split-row"
    assert suite.describe_plan(x, "batch", False, {}) == "split-row"
    assert suite.describe_plan(x, "instance", False, suite.PATHS["rows-persistent"]) == "rows persistent"
    assert suite.describe_plan(x, "group", False, suite.PATHS["rows-swept"]) == "rows swept"
    # Swept rows do not apply to NCHW instance statistics: the plan's fallback runs, so the case is skipped.
    assert suite.describe_plan(x, "instance", False, suite.PATHS["rows-swept"]) == "split-row"


# ------------------------------------------------------------------------------------------------------- label maps
def _classes_per_tile(labels: torch.Tensor, tile: int = 32) -> list[int]:
    n, h, w = labels.shape
    return [
        int(labels[i, y : y + tile, x : x + tile].unique().numel())
        for i in range(n)
        for y in range(0, h, tile)
        for x in range(0, w, tile)
    ]


@pytest.mark.parametrize("num_classes", [151, 35])
def test_blocky_label_maps_are_piecewise_constant_and_in_range(num_classes):
    gen = torch.Generator().manual_seed(0)
    labels = gpu_timing.blocky_labels(8, 64, 64, num_classes, generator=gen, device="cpu")
    assert labels.shape == (8, 64, 64)
    assert labels.dtype == torch.int64
    assert int(labels.min()) >= 0
    assert int(labels.max()) < num_classes
    per_tile = _classes_per_tile(labels)
    assert max(per_tile) <= 13  # background and 12 rectangles at most
    assert sum(per_tile) / len(per_tile) <= 8
    assert len(labels.unique()) > 8  # not one class everywhere: several regions per batch


def test_random_label_maps_are_not_blocky():
    gen = torch.Generator().manual_seed(0)
    labels = gpu_timing.random_labels(2, 64, 64, 151, generator=gen, device="cpu")
    assert int(labels.min()) >= 0
    assert int(labels.max()) < 151
    assert min(_classes_per_tile(labels)) > 100


def test_summarize_times_keeps_calls_with_the_host_ahead():
    timing = gpu_timing.summarize_times([1.0, 2.0, 3.0, 4.0, 50.0], [True] * 4 + [False], 0.2)
    assert (timing.median_ms, timing.min_ms, timing.max_ms, timing.reps) == (2.5, 1.0, 4.0, 5)
    assert timing.host_ahead == pytest.approx(0.8)


# -------------------------------------------------------------------------------------------------------- preflight
def test_preflight_names_a_missing_compiler(monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(gpu_preflight.PreflightError, match="no C compiler"):
        gpu_preflight.c_compiler()


def test_preflight_names_a_missing_python_header(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu_preflight.sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    with pytest.raises(gpu_preflight.PreflightError, match=r"Python\.h is missing"):
        gpu_preflight.python_header()


def test_lookup_table_gives_time_and_bytes_relative_to_the_original():
    def record(impl: str, us: float, saved: int) -> dict:
        info = {
            "device": "cuda",
            "device_name": "Test GPU",
            "benchmark": "label_conv_gpu",
            "model": "layer up_3",
            "batch": 8,
            "dtype": "bf16",
            "mode": "forward+backward",
            "impl": impl,
            "lookup_device_ms": {"median_ms": us / 1e3},
            "peak_allocated_bytes": 2**30,
            "saved_bytes": saved,
            "rel_err_vs_original": 1e-3,
        }
        group = "lookup layer up_3 batch 8 bf16 forward+backward"
        return {"group": group, "name": impl, "stats": {"median": us / 1e6, "iqr": 0, "rounds": 3}, "extra_info": info}

    data = {"benchmarks": [record("original", 400.0, 2**30), record("spadenorm ids", 300.0, 2**29)]}
    report = summarize.summarize_gpu(data)
    row = "| layer up_3 batch 8 bf16 forward+backward | spadenorm ids | 300.0 | 0.75x | 512.0 | 0.50x | 1024 |"
    assert row in report
