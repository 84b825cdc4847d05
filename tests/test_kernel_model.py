"""The launch model (benchmarks/launch_model.py) and the host-overhead measurement (benchmarks/host_overhead.py):
their logic on CPU, where they need no GPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks package of this checkout
    sys.path.append(str(ROOT))

pytest.importorskip("triton")
from benchmarks import host_overhead, launch_model  # noqa: E402
from spadenorm.backends.triton import launch  # noqa: E402

H200 = launch_model.Device()


def test_resident_rows_move_the_minimum_bytes():
    p = launch_model.predict("up_1", (8, 512, 64, 64), "fp32", "instance", H200)
    assert p.path == "resident"
    assert (p.bytes_forward, p.bytes_backward) == (4.0, 5.0)
    assert p.programs == 2048


def test_persistent_rows_reread_from_memory_only_what_l2_cannot_hold():
    fits = launch_model.predict("up_2", (8, 256, 128, 128), "bf16", "instance", H200)
    assert fits.path == "persistent"
    assert fits.bytes_forward == pytest.approx(4.0)  # 264 rows of 32 KB, twice: 17 MB of a 50 MB L2
    spills = launch_model.predict("up_3", (8, 128, 256, 256), "fp32", "instance", H200)
    assert spills.path == "persistent"
    # 264 rows of 256 KB: forward working set 2 x 69 MB, h = 50 / 138; backward 8 KB tiles, 3 x 69 MB
    assert spills.bytes_forward == pytest.approx(4 + (1 - 50e6 / (264 * 65536 * 4 * 2)))
    assert spills.bytes_backward == pytest.approx(5 + 3 * (1 - 50e6 / (264 * 65536 * 4 * 3)))
    small_l2 = launch_model.Device(l2_bytes=10e6)
    smaller = launch_model.predict("up_2", (8, 256, 128, 128), "bf16", "instance", small_l2)
    assert smaller.bytes_forward == pytest.approx(5 - 10e6 / (264 * 16384 * 2 * 2))


def test_split_row_path_for_batch_statistics_and_few_long_rows():
    batch = launch_model.predict("up_2", (8, 256, 128, 128), "fp32", "batch", H200)
    assert (batch.path, batch.bytes_forward, batch.bytes_backward) == ("split-row", 5.0, 8.0)
    few_rows = launch_model.predict("up_3", (1, 128, 256, 256), "fp32", "instance", H200)
    assert few_rows.path == "split-row"  # 128 rows cannot fill 132 SMs
    small = launch_model.predict("head_0", (8, 1024, 8, 8), "fp32", "batch", H200)
    assert (small.bytes_forward, small.bytes_backward) == (4.0, 5.0)  # x stays in L2 between the launches


def test_fractions_fall_with_launch_overhead_and_underfilled_grids():
    big = launch_model.predict("up_1", (8, 512, 64, 64), "fp32", "instance", H200)
    tiny = launch_model.predict("head_0", (1, 1024, 8, 8), "fp32", "instance", H200)
    assert 0 < tiny.fraction_forward < big.fraction_forward <= 1


def test_programs_per_sm_from_a_compile_report(tmp_path):
    def variant(kernel, programs, **constexprs):
        return {"kernel": kernel, "constexprs": constexprs, "programs_per_sm": programs}

    report = tmp_path / "cc.json"
    report.write_text(json.dumps({"triton": "3.6.0", "variants": [
        variant("_row_fwd_kernel", 3, RESIDENT=True, EVICT_FIRST=False, GAMMA=1),
        variant("_row_fwd_kernel", 1, RESIDENT=True, EVICT_FIRST=False, GAMMA=2),  # class tables: not modelled
        variant("_row_fwd_kernel", 1, RESIDENT=True, EVICT_FIRST=False, GAMMA=1, HAS_SCALE=True),
        variant("_row_bwd_kernel", 1, RESIDENT=True, EVICT_FIRST=False),
        variant("_row_fwd_kernel", 2, RESIDENT=False, EVICT_FIRST=True),
        variant("_row_fwd_kernel", 4, RESIDENT=False, EVICT_FIRST=False),
        variant("_modulate_fwd_kernel", 8),
        variant("_stats_partial_kernel", 7),
        variant("_backward_sums_kernel", 1),
        variant("_class_table_grad_kernel", 1),
    ]}))  # fmt: skip
    assert launch_model.programs_per_sm_from_report(str(report)) == {
        "resident": 3,
        "persistent": 2,
        "swept": 4,
        "split": 7,
    }


def test_every_case_gets_a_prediction_and_a_table_row():
    predictions = [launch_model.predict(*case, H200) for case in launch_model.cases()]
    table = launch_model.markdown(predictions)
    assert len(table.splitlines()) == 2 + len(predictions)
    assert {p.path for p in predictions} == {"resident", "persistent", "split-row"}


def test_host_overhead_measures_every_path_and_restores_the_kernels():
    kernels = {name: getattr(launch, name) for name in host_overhead.KERNELS}
    assert "_row_fwd_kernel" in kernels
    results = host_overhead.measure(calls=2, repeat=1)
    assert set(results) == {"row forward", "row forward+backward", "split-row forward", "split-row forward+backward",
                            "batch forward+backward", "clade forward+backward",
                            "floor: empty autograd.Function forward",
                            "floor: empty autograd.Function forward+backward"}  # fmt: skip
    assert all(us > 0 for us in results.values())
    assert all(getattr(launch, name) is kernel for name, kernel in kernels.items())
