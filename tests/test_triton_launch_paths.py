"""Every path the launch rule can take, forced through ``launch.overridden`` and checked against the float64
reference; the launch rule's own choices on the SPADE generator's shapes; the occupancy model.

Under the interpreter (no GPU) a persistent launch has two programs, so each program loops over several rows.
"""

from __future__ import annotations

import pytest
import torch

import spadenorm
from spadenorm.functional import class_modulated_norm
from spadenorm.reference import class_modulated_norm_reference
from spadenorm.testing import check_against_reference

pytest.importorskip("triton")
from spadenorm.backends.triton import launch, occupancy
from spadenorm.backends.triton.layout import Strides, row_launch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def _triton_backend():
    with spadenorm.use_backend("triton"):
        yield


def _inputs(shape, seed, channels_last=False, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen) * 3 + 20).to(DEVICE, dtype)  # |mean| >> std stresses the merges
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    gamma = torch.randn(shape, generator=gen).to(DEVICE, dtype)
    beta = torch.randn(shape[1], generator=gen).to(DEVICE, dtype)
    return [t.requires_grad_(True) for t in (x, gamma, beta)]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("strategy", ["resident", "swept", "persistent"])
@pytest.mark.parametrize(("norm", "groups"), [("instance", None), ("group", 3), ("layer", None)])
def test_every_row_strategy_against_the_reference(norm, groups, strategy, channels_last):
    shape = (3, 6, 5, 7)
    x, gamma, beta = _inputs(shape, seed=1, channels_last=channels_last)
    with launch.overridden(row_kernels=True, row_strategy=strategy):
        plan = launch.row_plan(x, launch_groups(norm, groups, shape[1]))
        if plan is None:
            pytest.skip(f"{strategy} does not apply to {norm} statistics")
        assert plan.strategy == strategy or (strategy == "persistent" and plan.strategy == "swept")
        check_against_reference(x, gamma, beta, norm=norm, num_groups=groups)


def launch_groups(norm: str, groups: int | None, channels: int) -> int:
    return {"instance": channels, "layer": 1}.get(norm, groups or channels)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_persistent_rows_longer_than_a_tile(dtype):
    """Rows of several tiles plus a remainder, each program looping over several rows."""
    # S = 9797 positions per row: more than a 16 KB tile holds in fp32 or bf16; on a GPU, more rows than its
    # persistent grid holds.
    shape = (2, 3, 97, 101) if DEVICE == "cpu" else (8, 512, 97, 101)
    x, gamma, beta = _inputs(shape, seed=2, dtype=dtype)
    with launch.overridden(row_kernels=True, row_strategy="persistent"):
        plan = launch.row_plan(x, shape[1])
        spatial = shape[2] * shape[3]
        assert plan.strategy == "persistent"
        assert spatial > plan.block_s
        assert spatial % plan.block_s != 0
        assert plan.programs < shape[0] * shape[1]
        check_against_reference(x, gamma, beta, norm="instance")


def test_resident_group_rows_use_one_tile_of_several_channels():
    shape = (2, 8, 6, 6)
    x, gamma, beta = _inputs(shape, seed=3)
    with launch.overridden(row_kernels=True):
        plan = launch.row_plan(x, 2)
        assert (plan.strategy, plan.block_c, plan.block_s) == ("resident", 4, 64)
        check_against_reference(x, gamma, beta, norm="group", num_groups=2)


@pytest.mark.parametrize("torch_glue", [False, True], ids=["finalize_kernel", "torch_glue"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize(
    ("norm", "groups"), [("instance", None), ("group", 2), ("layer", None), ("batch", None), ("sync_batch", None)]
)
def test_split_row_path_with_and_without_torch_glue(norm, groups, channels_last, torch_glue):
    """Several spans per row (max_span), merged by the finalize kernel or in torch; the dx kernel pools its own
    coefficients or takes them from torch."""
    # NCHW: S = 2109 in spans of one 1024-position tile, 3 per row; channels_last: 64-channel tiles of 32
    # positions, S = 117 in 4 spans.
    shape, max_span = ((2, 64, 9, 13), 32) if channels_last else ((2, 4, 37, 57), 1024)
    x, gamma, beta = _inputs(shape, seed=4, channels_last=channels_last)
    with launch.overridden(row_kernels=False, torch_glue=torch_glue, max_span=max_span):
        assert launch.reduction_span(x) == max_span
        check_against_reference(x, gamma, beta, norm=norm, num_groups=groups)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("running_dtype", [torch.float32, torch.float64], ids=str)
def test_finalize_kernel_updates_running_statistics_as_batchnorm(momentum, running_dtype):
    """fp32 running estimates are updated by the finalize kernel, others in torch: both as BatchNorm2d does."""
    torch.manual_seed(0)
    ours = spadenorm.ParamFreeNorm(5, "batch", momentum=momentum).to(DEVICE, running_dtype)
    theirs = torch.nn.BatchNorm2d(5, affine=False, momentum=momentum).to(DEVICE, running_dtype)
    with launch.overridden(max_span=16):
        for step in range(3):
            x = (torch.randn(3, 5, 6, 7) * (step + 1) + step).to(DEVICE)
            torch.testing.assert_close(ours(x), theirs(x.to(running_dtype)).float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, theirs.running_mean, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ours.running_var, theirs.running_var, atol=1e-6, rtol=1e-6)


def _blocky_labels(n, h, w, classes, gen):
    """Piecewise-constant maps, as real label maps are: 4x4-pixel blocks of one class."""
    coarse = torch.randint(0, classes, (n, -(-h // 4), -(-w // 4)), generator=gen)
    return coarse.repeat_interleave(4, 1).repeat_interleave(4, 2)[:, :h, :w].contiguous()


@pytest.mark.parametrize("table_grad", ["chunked", "dense"])
@pytest.mark.parametrize("labels_kind", ["blocky", "random", "one_class"])
@pytest.mark.parametrize("classes", [5, 40])
def test_class_table_gradients(classes, labels_kind, table_grad):
    """Tables of 5 classes (one chunk) and 40 (three chunks, some absent from a tile), on maps of one class, blocks
    and independent pixels, in NCHW (tables gathered per channel) and channels_last."""
    gen = torch.Generator().manual_seed(5)
    n, c, h, w = 2, 18, 12, 11
    labels = {
        "blocky": lambda: _blocky_labels(n, h, w, classes, gen),
        "random": lambda: torch.randint(0, classes, (n, h, w), generator=gen),
        "one_class": lambda: torch.full((n, h, w), classes - 1, dtype=torch.long),
    }[labels_kind]().to(DEVICE)
    tables = [torch.randn(classes, c, generator=gen).to(DEVICE).requires_grad_(True) for _ in range(2)]
    for channels_last in (False, True):
        x = torch.randn(n, c, h, w, generator=gen).to(DEVICE)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        x.requires_grad_(True)
        with launch.overridden(table_grad=table_grad):
            y = class_modulated_norm(x, labels, *tables)
            dy = torch.randn(y.shape, generator=gen).to(DEVICE)
            grads = torch.autograd.grad(y, (x, *tables), dy)
        ref = class_modulated_norm_reference(x, labels, *tables)
        ref_grads = torch.autograd.grad(ref, (x, *tables), dy.double())
        torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=1e-5)
        for name, g, r in zip(("dx", "dgamma_table", "dbeta_table"), grads, ref_grads, strict=True):
            torch.testing.assert_close(g.double(), r.double(), atol=1e-4, rtol=1e-5, msg=lambda m, k=name: f"{k}: {m}")


def test_unknown_overrides_are_refused_and_restored():
    with pytest.raises(TypeError, match="no field 'row_kernel'"), launch.overridden(row_kernel=True):
        pass
    with launch.overridden(row_strategy="swept"):
        assert launch.OVERRIDES.row_strategy == "swept"
    assert launch.OVERRIDES.row_strategy is None
    with pytest.raises(ValueError, match="row strategy must be one of"):
        row_launch(1, 4, 16, Strides(64, 16, 1), 4, 4, fill=1, capacity=1, strategy="fast")


# The rule on an H100/H200 (132 SMs: fill 264 programs, a persistent capacity of 264), NCHW fp32.
@pytest.mark.parametrize(
    ("shape", "strategy", "programs"),
    [
        ((8, 1024, 8, 8), "resident", 512),  # head_0: 32-channel tiles narrowed to 16 for 512 programs
        ((1, 1024, 8, 8), "resident", 512),  # batch 1: narrowed to 2 channels
        ((8, 512, 64, 64), "resident", 2048),  # up_1: two 4096-position rows per program
        ((8, 256, 128, 128), "persistent", 264),  # up_2: one program per slot looping over 2048 rows
        ((8, 128, 256, 256), "persistent", 264),
    ],
)
def test_launch_rule_on_generator_shapes(shape, strategy, programs):
    n, c, h, w = shape
    plan = row_launch(n, c, h * w, Strides(c * h * w, h * w, 1), 4, c, fill=264, capacity=264)
    assert (plan.strategy, plan.programs) == (strategy, programs)
    assert plan.block_c * plan.block_s <= (8192 if strategy == "resident" else 4096)


def test_channels_last_rows_keep_whole_sectors():
    n, c, h, w = 8, 1024, 16, 16
    plan = row_launch(n, c, h * w, Strides(c * h * w, 1, c), 4, c, fill=264, capacity=264)
    assert plan.strategy == "resident"
    assert plan.block_c >= 16
    long_rows = row_launch(n, 256, 128 * 128, Strides(256 * 128 * 128, 1, 256), 4, 256, fill=264, capacity=264)
    assert long_rows.strategy == "swept"
    assert long_rows.block_c == 16


def test_occupancy_from_registers_and_shared_memory():
    assert occupancy.programs_per_sm(registers=56, shared_bytes=24 * 1024, num_warps=4) == 9  # shared bound
    assert occupancy.programs_per_sm(registers=255, shared_bytes=0, num_warps=4) == 2  # register bound
    assert occupancy.programs_per_sm(registers=32, shared_bytes=0, num_warps=4) == 16  # warp bound
    assert occupancy.programs_per_sm(registers=16, shared_bytes=0, num_warps=1) == 32  # block bound


def test_eager_calls_skip_the_dispatcher_and_traced_calls_go_through_it(monkeypatch):
    """Eager calls on plain tensors run each op's Python function; tracing (make_fx, here) records the registered
    ops, so torch.compile and export see opaque ops with their fakes."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from spadenorm.backends.triton import ops

    dispatched = []
    original_run = ops.run

    def recording_run(op, *args):
        out = original_run(op, *args)
        dispatched.append(op)
        return out

    monkeypatch.setattr(ops, "run", recording_run)
    x, gamma, beta = _inputs((2, 3, 4, 5), seed=6)
    calls = []
    for name, fn in list(ops._PYTHON_FUNCTIONS.items()):
        monkeypatch.setitem(ops._PYTHON_FUNCTIONS, name, lambda *a, _fn=fn: calls.append(_fn) or _fn(*a))
    spadenorm.functional.modulated_norm(x, gamma, beta).sum().backward()
    assert len(calls) == len(dispatched) == 2  # row forward, row backward: both called directly
    calls.clear()
    graph = make_fx(lambda x, g, b: spadenorm.functional.modulated_norm(x, g, b))(x.detach(), gamma.detach(), beta)
    assert not calls  # traced: through the registered op
    assert "spadenorm.row_forward" in str(graph.code)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_a_spade_block_is_captured_in_a_cuda_graph(norm):
    """Forward and backward of a SPADE layer replay from a CUDA graph with the eager results: no host syncs, no
    allocation outside the graph's pool."""
    torch.manual_seed(0)
    layer = spadenorm.SPADE(64, label_nc=8, norm=norm).cuda()
    x = torch.randn(4, 64, 32, 32, device="cuda", requires_grad=True)
    seg = torch.randn(4, 8, 32, 32, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up: compile every kernel variant outside the capture
        for _ in range(2):
            layer(x, seg).square().sum().backward()
    torch.cuda.current_stream().wait_stream(stream)
    layer.zero_grad(set_to_none=True)
    x.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = layer(x, seg)
        y.square().sum().backward()
    graph.replay()
    torch.cuda.synchronize()
    captured_y, captured_dx = y.detach().clone(), x.grad.detach().clone()
    x.grad = None
    eager = layer(x, seg)
    eager.square().sum().backward()
    torch.testing.assert_close(captured_y, eager.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(captured_dx, x.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape", [(2, 3, 5, 1), (1, 3, 1, 7), (2, 1, 5, 7)])
def test_gamma_broadcast_over_some_spatial_dimensions(shape):
    """A map of (N, C, H, 1) or (1, C, 1, W) is not a per-channel vector: it is read at x's positions."""
    x, _, beta = _inputs((2, 3, 5, 7), seed=7)
    gamma = torch.randn(shape, generator=torch.Generator().manual_seed(8)).to(DEVICE).requires_grad_(True)
    for row_kernels in (True, False):
        with launch.overridden(row_kernels=row_kernels):
            check_against_reference(x, gamma, beta, norm="instance")


def test_symbolic_tracing_records_the_registered_ops():
    """Plans of symbolic shapes are computed without the caches (symbolic sizes are not hashable)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    x, gamma, beta = (t.detach() for t in _inputs((2, 3, 4, 5), seed=9))
    graph = make_fx(lambda x, g, b: spadenorm.functional.modulated_norm(x, g, b), tracing_mode="symbolic")(
        x, gamma, beta
    )
    assert "spadenorm.row_forward" in str(graph.code)


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "dispatcher"])
def test_running_estimates_updated_in_place_bump_their_version(traced, monkeypatch):
    """The finalize kernel's in-place update is visible to autograd's version counters on both call paths."""
    from spadenorm.backends.triton import ops

    if traced:  # what a traced call does: through the registered op
        monkeypatch.setattr(ops, "_PYTHON_FUNCTIONS", {})
        monkeypatch.setattr(ops, "run", lambda op, *args: op(*args))
    norm = spadenorm.ParamFreeNorm(4, "batch").to(DEVICE)
    before = norm.running_mean._version, norm.running_var._version
    norm(torch.randn(2, 4, 3, 3, device=DEVICE))
    assert norm.running_mean._version > before[0]
    assert norm.running_var._version > before[1]
