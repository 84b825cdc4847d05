"""The launch model (benchmarks/launch_model.py) and the host-overhead measurement (benchmarks/host_overhead.py):
their logic on CPU, where they need no GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks package of this checkout
    sys.path.append(str(ROOT))

pytest.importorskip("triton")
from benchmarks import launch_model  # noqa: E402

H200 = launch_model.Device()


def test_resident_rows_move_the_minimum_bytes():
    p = launch_model.predict("up_1", (8, 512, 64, 64), "fp32", "instance", H200)
    assert (p.path, p.path_backward) == ("resident", "resident")
    assert (p.bytes_forward, p.bytes_backward) == (4.0, 5.0)
    assert (p.programs, p.programs_backward) == (2048, 4096)  # the backward's 4096-element tiles: twice the rows


def test_persistent_rows_reread_from_memory_only_what_l2_cannot_hold():
    fits = launch_model.predict("up_2", (8, 256, 128, 128), "bf16", "instance", H200)
    assert fits.path == "persistent"
    assert fits.bytes_forward == pytest.approx(4.0)  # the rows in flight, twice: well within a 50 MB L2
    spills = launch_model.predict("up_3", (8, 128, 256, 256), "fp32", "instance", H200)
    assert spills.path == spills.path_backward == "persistent"
    rows_in_flight = min(spills.programs, H200.sms * launch_model.DEFAULT_PROGRAMS_PER_SM["persistent"])
    # forward: 2 tensors of 256 KB rows; backward: 3 (dy, x, gamma)
    assert spills.bytes_forward == pytest.approx(4 + (1 - 50e6 / (rows_in_flight * 65536 * 4 * 2)))
    assert spills.bytes_backward == pytest.approx(5 + 3 * (1 - 50e6 / (rows_in_flight * 65536 * 4 * 3)))
    small_l2 = launch_model.Device(l2_bytes=10e6)
    smaller = launch_model.predict("up_2", (8, 256, 128, 128), "bf16", "instance", small_l2)
    assert smaller.bytes_forward > fits.bytes_forward


def test_split_row_path_for_batch_statistics_and_few_long_rows():
    batch = launch_model.predict("up_2", (8, 256, 128, 128), "fp32", "batch", H200)
    assert (batch.path, batch.path_backward, batch.bytes_forward, batch.bytes_backward) == (
        "split-row", "split-row", 5.0, 8.0)  # fmt: skip
    assert (batch.launches_forward, batch.launches_backward) == (3, 2)
    few_rows = launch_model.predict("up_3", (1, 128, 256, 256), "fp32", "instance", H200)
    assert few_rows.path == "split-row"  # 128 rows cannot fill 132 SMs
    small = launch_model.predict("head_0", (8, 1024, 8, 8), "fp32", "batch", H200)
    assert (small.bytes_forward, small.bytes_backward) == (4.0, 5.0)  # x stays in L2 between the launches


def test_fractions_fall_with_launch_overhead_and_underfilled_grids():
    big = launch_model.predict("up_1", (8, 512, 64, 64), "fp32", "instance", H200)
    tiny = launch_model.predict("head_0", (1, 1024, 8, 8), "fp32", "instance", H200)
    assert 0 < tiny.fraction_forward < big.fraction_forward <= 1


def test_programs_per_sm_from_a_compile_report(tmp_path):
    def variant(kernel, programs, warps=8, element_size=4, block=(1, 4096), **constexprs):
        constexprs.update(BLOCK_C=block[0], BLOCK_S=block[1])
        return {"kernel": kernel, "constexprs": constexprs, "programs_per_sm": programs, "num_warps": warps,
                "element_size": element_size}  # fmt: skip

    report = tmp_path / "cc.json"
    report.write_text(json.dumps({"triton": "3.6.0", "variants": [
        variant("_row_fwd_kernel", 3, STRATEGY=0, GAMMA=1),
        variant("_row_fwd_kernel", 1, STRATEGY=0, GAMMA=2),  # class tables: not modelled
        variant("_row_fwd_kernel", 2, STRATEGY=0, GAMMA=1, PER_CHANNEL=False),  # group rows: not modelled
        variant("_row_bwd_kernel", 2, STRATEGY=0, GAMMA=1),
        variant("_row_bwd_kernel", 1, STRATEGY=0, GAMMA=1, NEED_Z=True),  # with a scale gradient: not modelled
        variant("_row_fwd_kernel", 4, STRATEGY=2, GAMMA=1),
        variant("_stats_partial_kernel", 7, warps=4, block=(2, 1024)),
        variant("_modulate_fwd_kernel", 8),
    ]}))  # fmt: skip
    assert launch_model.programs_per_sm_from_report(str(report)) == {
        ("_row_fwd_kernel", "resident", 4, 8, 4096): 3,
        ("_row_bwd_kernel", "resident", 4, 8, 4096): 2,
        ("_row_fwd_kernel", "persistent", 4, 8, 4096): 4,
        ("_stats_partial_kernel", "split", 4, 4, 2048): 7,
    }


def test_the_backward_is_modelled_with_its_own_kernels_occupancy():
    """Fewer programs per SM for the backward kernel lower the backward's prediction, not the forward's."""
    key = ("_row_bwd_kernel", "resident", 2, 8, 4096)  # bf16: 8 KB tiles, too few bytes in flight at 1 per SM
    base = launch_model.predict("up_1", (8, 512, 64, 64), "bf16", "instance", H200)
    crowded = launch_model.Device(programs_per_sm={key: 1})
    slow = launch_model.predict("up_1", (8, 512, 64, 64), "bf16", "instance", crowded)
    assert slow.fraction_forward == base.fraction_forward
    assert slow.fraction_backward < base.fraction_backward


def test_every_case_gets_a_prediction_and_a_table_row():
    predictions = [launch_model.predict(*case, H200) for case in launch_model.cases()]
    table = launch_model.markdown(predictions)
    assert len(table.splitlines()) == 2 + len(predictions)
    assert {p.path for p in predictions} == {"resident", "persistent", "split-row"}


def test_host_overhead_times_every_path_through_triton_with_only_the_device_work_stubbed(tmp_path):
    """The script compiles the variants for sm_90 and launches them through Triton's launch path; each path makes
    its launches (a forward one, a backward one), all of which reach the stubbed launcher."""
    out = tmp_path / "host.json"
    paths = ["row forward", "row forward+backward", "floor: empty autograd.Function forward"]
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "host_overhead.py"), "--calls", "3", "--repeat", "1",
                    "--json", str(out), "--paths", *paths], check=True, cwd=ROOT, capture_output=True)  # fmt: skip
    results = json.loads(out.read_text())
    assert list(results) == paths
    assert [r["launches"] for r in results.values()] == [1, 2, 0]
    assert all(r["us"] > 0 and r["cpu_us"] > 0 for r in results.values())
