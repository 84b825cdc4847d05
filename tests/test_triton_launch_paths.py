"""Every path the launch plan can take, forced through ``plan.overridden`` and checked against the float64
reference; the plan's own choices on the SPADE generator's shapes; occupancy; determinism of plans and grids.

Under the interpreter (no GPU) a persistent launch has two programs, so each program loops over several rows.
"""

from __future__ import annotations

import pytest
import torch

import spadenorm
from spadenorm._core import NormSpec
from spadenorm.functional import class_modulated_norm, modulated_norm
from spadenorm.reference import class_modulated_norm_reference, modulated_norm_reference
from spadenorm.testing import check_against_reference

pytest.importorskip("triton")
from spadenorm.backends.triton import autograd, launch, occupancy, ops, plan
from spadenorm.backends.triton.kernels.common import Strategy
from spadenorm.backends.triton.layout import Strides
from spadenorm.backends.triton.plan import Signature, make_plan, overridden

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
H100 = occupancy.Device(132, occupancy.HOPPER)


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


def _plan(x, norm="instance", groups=None, tables=False):
    return plan.plan_for(x, NormSpec(norm, groups), True, tables, False)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("strategy", ["resident", "swept", "persistent"])
@pytest.mark.parametrize(("norm", "groups"), [("instance", None), ("group", 3), ("layer", None)])
def test_every_row_strategy_against_the_reference(norm, groups, strategy, channels_last):
    shape = (3, 6, 5, 7)
    x, gamma, beta = _inputs(shape, seed=1, channels_last=channels_last)
    with overridden(row_kernels=True, row_strategy=strategy):
        call = _plan(x, norm, groups)
        if call.strategy not in autograd.ROWS:
            pytest.skip(f"{strategy} rows do not apply to {norm} statistics in this layout")
        assert call.strategy == plan.ROW_STRATEGIES[strategy] == call.backward_strategy
        check_against_reference(x, gamma, beta, norm=norm, num_groups=groups)


def test_forced_swept_rows_do_not_apply_to_nchw_instance_statistics():
    """NCHW instance rows longer than a tile are persistent; swept rows are for groups and channels_last."""
    x, _, _ = _inputs((3, 6, 5, 7), seed=1)
    with overridden(row_kernels=True, row_strategy="swept"):
        assert _plan(x).strategy == Strategy.SPLIT
        assert _plan(x, "group", 3).strategy == Strategy.SWEPT
        assert _plan(x.to(memory_format=torch.channels_last)).strategy == Strategy.SWEPT


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_persistent_rows_longer_than_a_tile(dtype):
    """Rows of several tiles plus a remainder, each program looping over several rows."""
    # S = 9797 positions per row: more than a 16 KB tile holds in fp32 or bf16; on a GPU, more rows than its
    # persistent grid holds.
    shape = (2, 3, 97, 101) if DEVICE == "cpu" else (8, 512, 97, 101)
    x, gamma, beta = _inputs(shape, seed=2, dtype=dtype)
    with overridden(row_kernels=True, row_strategy="persistent"):
        call = _plan(x)
        spatial = shape[2] * shape[3]
        for row in (call.forward[0], call.backward[0]):
            assert row.strategy == Strategy.PERSISTENT
            assert spatial > row.block_s
            assert spatial % row.block_s != 0
            assert row.grid0 < shape[0] * shape[1]
        check_against_reference(x, gamma, beta, norm="instance")


def test_resident_group_rows_use_one_tile_of_several_channels():
    shape = (2, 8, 6, 6)
    x, gamma, beta = _inputs(shape, seed=3)
    with overridden(row_kernels=True):
        row = _plan(x, "group", 2).forward[0]
        assert (row.strategy, row.block_c, row.block_s, row.row_channels) == (Strategy.RESIDENT, 4, 64, 4)
        check_against_reference(x, gamma, beta, norm="group", num_groups=2)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize(
    ("norm", "groups"), [("instance", None), ("group", 2), ("layer", None), ("batch", None), ("sync_batch", None)]
)
def test_split_row_path(norm, groups, channels_last):
    """Several spans per row (max_span), merged by the finalize kernel; the dx kernel pools its own coefficients."""
    # NCHW: S = 2109 in spans of one 1024-position tile, 3 per row; channels_last: 64-channel tiles of 32
    # positions, S = 117 in 4 spans.
    shape, max_span = ((2, 64, 9, 13), 32) if channels_last else ((2, 4, 37, 57), 1024)
    x, gamma, beta = _inputs(shape, seed=4, channels_last=channels_last)
    with overridden(row_kernels=False, max_span=max_span):
        call = _plan(x, "batch" if norm == "sync_batch" else norm, groups)
        assert call.strategy == call.backward_strategy == Strategy.SPLIT
        assert call.forward[0].span == call.backward[0].span == max_span
        check_against_reference(x, gamma, beta, norm=norm, num_groups=groups)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("running_dtype", [torch.float32, torch.float64], ids=str)
def test_finalize_kernel_updates_running_statistics_as_batchnorm(momentum, running_dtype):
    """Running estimates of any float dtype are updated by the finalize kernel as BatchNorm2d updates them."""
    torch.manual_seed(0)
    ours = spadenorm.ParamFreeNorm(5, "batch", momentum=momentum).to(DEVICE, running_dtype)
    theirs = torch.nn.BatchNorm2d(5, affine=False, momentum=momentum).to(DEVICE, running_dtype)
    with overridden(max_span=16):
        for step in range(3):
            x = (torch.randn(3, 5, 6, 7) * (step + 1) + step).to(DEVICE)
            torch.testing.assert_close(ours(x), theirs(x.to(running_dtype)).float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, theirs.running_mean, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ours.running_var, theirs.running_var, atol=1e-6, rtol=1e-6)


def test_finalize_kernel_updates_strided_running_statistics():
    """Running estimates that are views with a step are updated in place, element by element."""
    x = torch.randn(3, 5, 6, 7, device=DEVICE)
    mean_buffer, var_buffer = torch.zeros(10, device=DEVICE), torch.ones(10, device=DEVICE)
    mean, var = torch.zeros(5, device=DEVICE), torch.ones(5, device=DEVICE)
    modulated_norm(x, norm="batch", running_mean=mean_buffer[::2], running_var=var_buffer[::2])
    modulated_norm(x, norm="batch", running_mean=mean, running_var=var)
    torch.testing.assert_close(mean_buffer[::2], mean)
    torch.testing.assert_close(var_buffer[::2], var)
    assert (mean_buffer[1::2] == 0).all()
    assert (var_buffer[1::2] == 1).all()


def _blocky_labels(n, h, w, classes, gen):
    """Piecewise-constant maps, as real label maps are: 4x4-pixel blocks of one class."""
    coarse = torch.randint(0, classes, (n, -(-h // 4), -(-w // 4)), generator=gen)
    return coarse.repeat_interleave(4, 1).repeat_interleave(4, 2)[:, :h, :w].contiguous()


@pytest.mark.parametrize("labels_kind", ["blocky", "random", "one_class"])
@pytest.mark.parametrize("classes", [5, 40])
def test_class_table_gradients(classes, labels_kind):
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
        y = class_modulated_norm(x, labels, *tables)
        dy = torch.randn(y.shape, generator=gen).to(DEVICE)
        grads = torch.autograd.grad(y, (x, *tables), dy)
        ref = class_modulated_norm_reference(x, labels, *tables)
        ref_grads = torch.autograd.grad(ref, (x, *tables), dy.double())
        torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=1e-5)
        for name, g, r in zip(("dx", "dgamma_table", "dbeta_table"), grads, ref_grads, strict=True):
            torch.testing.assert_close(g.double(), r.double(), atol=1e-4, rtol=1e-5, msg=lambda m, k=name: f"{k}: {m}")


def test_unknown_overrides_are_refused_and_restored():
    with pytest.raises(TypeError, match="no field 'row_kernel'"), overridden(row_kernel=True):
        pass
    with pytest.raises(ValueError, match="row strategy must be one of"), overridden(row_strategy="fast"):
        pass
    with overridden(row_strategy="swept"):
        assert plan.OVERRIDES.row_strategy == "swept"
    assert plan.LaunchOverrides() == plan.OVERRIDES


def _signature(shape, strides=None, element_size=4, groups=None, tables=False):
    n, c, h, w = shape
    strides = strides or Strides(c * h * w, h * w, 1)
    return Signature(n, c, h * w, strides, element_size, c if groups is None else groups, True, tables, False)


def _slots(kernel, element_size, warps, tile, device=H100, tables=False):
    block_c, block_s = tile if isinstance(tile, tuple) else (1, tile)
    key = occupancy.family(kernel, element_size, warps, block_c, block_s, tables)
    return occupancy.resident_programs(key, device)


def _fills_whole_waves(launch, capacity, s):
    """The launch keeps at least 90 % of whole waves of ``capacity`` programs busy, or as many as any span of whole
    tiles (at most 64 spans per row) could."""
    blocks_s = -(-s // launch.block_s)
    rows = launch.grid0 * launch.grid1

    def efficiency(programs):
        return programs / (-(-programs // capacity) * capacity)

    spans = {-(-blocks_s // tiles) for tiles in range(1, blocks_s + 1)}
    reachable = max(efficiency(rows * parts) for parts in spans if parts <= 64)
    assert efficiency(rows * launch.grid2) >= min(0.9, reachable) - 1e-9
    assert launch.grid2 * launch.span >= s > (launch.grid2 - 1) * launch.span


# The rule on an H100/H200 (132 SMs), NCHW fp32 instance statistics: forward and backward.
@pytest.mark.parametrize(
    ("shape", "forward", "backward"),
    [
        ((8, 1024, 8, 8), (Strategy.RESIDENT, 512, 1024), (Strategy.RESIDENT, 512, 1024)),  # head_0: narrowed to 16
        ((1, 1024, 8, 8), (Strategy.RESIDENT, 512, 128), (Strategy.RESIDENT, 512, 128)),  # batch 1: to 2 channels
        ((8, 1024, 32, 32), (Strategy.RESIDENT, 1024, 8192), (Strategy.RESIDENT, 2048, 4096)),  # up_0
        ((8, 512, 64, 64), (Strategy.RESIDENT, 2048, 8192), (Strategy.RESIDENT, 4096, 4096)),  # up_1
        ((8, 256, 128, 128), (Strategy.PERSISTENT, None, 4096), (Strategy.PERSISTENT, None, 2048)),  # up_2
        ((8, 128, 256, 256), (Strategy.PERSISTENT, None, 4096), (Strategy.PERSISTENT, None, 2048)),  # up_3
    ],
)
def test_launch_plan_on_generator_shapes(shape, forward, backward):
    call = make_plan(_signature(shape), H100)
    for row, (strategy, programs, tile), kernel in zip(
        (call.forward[0], call.backward[0]), (forward, backward), ("_row_fwd_kernel", "_row_bwd_kernel"), strict=True
    ):
        assert (row.strategy, row.block_c * row.block_s) == (strategy, tile)
        if strategy == Strategy.PERSISTENT:  # one program per slot, from the variant's own occupancy
            assert row.grid0 == min(shape[0] * shape[1], _slots(kernel, 4, 8, tile))
        else:
            assert row.grid0 == programs
    assert call.backward[0].block_c * call.backward[0].block_s <= plan.RESIDENT_MAX_BACKWARD or (
        call.backward_strategy == Strategy.PERSISTENT
    )


def test_batch_one_long_rows_take_the_split_path_and_size_spans_from_occupancy():
    """128 rows cannot fill 132 SMs with one row each: partial statistics over spans that fill whole waves."""
    call = make_plan(_signature((1, 128, 256, 256)), H100)
    assert call.strategy == call.backward_strategy == Strategy.SPLIT
    partial = call.forward[0]
    _fills_whole_waves(partial, _slots("_stats_partial_kernel", 4, 4, (partial.block_c, partial.block_s)), 256 * 256)


def test_channels_last_rows_keep_whole_sectors():
    n, c, h, w = 8, 1024, 16, 16
    row = make_plan(_signature((n, c, h, w), Strides(c * h * w, 1, c)), H100).forward[0]
    assert row.strategy == Strategy.RESIDENT
    assert row.block_c >= 16
    long_rows = plan.row_launch(_signature((n, 256, 128, 128), Strides(256 * 128 * 128, 1, 256)), H100, False)
    assert long_rows.strategy == Strategy.SWEPT
    assert long_rows.block_c == 16
    assert not plan.fills_device(long_rows, n * 256 // 16, H100.sms)  # 128 rows: the split path runs them


def test_class_table_gradient_spans_come_from_their_own_tiles():
    """The table-gradient launch covers S with its own tiles (at least 16 channels) and fills whole waves."""
    call = make_plan(_signature((8, 512, 64, 64), tables=True), H100)
    table = call.table_grad
    assert table.block_c >= 16
    assert table.grid1 == 512 // table.block_c
    _fills_whole_waves(
        table, _slots("_class_table_grad_kernel", 4, 8, (table.block_c, table.block_s), tables=True), 64 * 64
    )


def test_occupancy_from_registers_and_shared_memory():
    assert occupancy.programs_per_sm(registers=56, shared_bytes=24 * 1024, num_warps=4) == 9  # shared bound
    assert occupancy.programs_per_sm(registers=255, shared_bytes=0, num_warps=4) == 2  # register bound
    assert occupancy.programs_per_sm(registers=32, shared_bytes=0, num_warps=4) == 16  # warp bound
    assert occupancy.programs_per_sm(registers=16, shared_bytes=0, num_warps=1) == 32  # block bound


def test_occupancy_follows_the_devices_own_limits():
    """An sm_86 SM (48 warps, 100 KB of shared memory, 16 blocks) holds fewer programs than a Hopper SM."""
    ampere = occupancy.SMLimits(registers=65536, shared_bytes=102400, threads=1536, blocks=16)
    assert occupancy.programs_per_sm(56, 48 * 1024, 4, ampere) == 2 < occupancy.programs_per_sm(56, 48 * 1024, 4)
    assert occupancy.programs_per_sm(32, 0, 4, ampere) == 12  # warp bound: 48 / 4
    assert occupancy.programs_per_sm(16, 0, 1, ampere) == 16  # block bound
    rtx = occupancy.Device(84, ampere)
    call = make_plan(_signature((8, 256, 128, 128)), rtx)
    assert call.forward[0].grid0 == _slots("_row_fwd_kernel", 4, 8, 4096, rtx) <= 84 * 16


class _Recorder:
    """Stands in for a kernel: records each launch's grid and arguments and runs nothing."""

    def __init__(self, name, launches):
        self.name, self.launches = name, launches

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            values = tuple(a if not isinstance(a, torch.Tensor) else (a.shape, a.stride(), a.dtype) for a in args)
            self.launches.append((self.name, tuple(grid), values, tuple(sorted(kwargs.items()))))

        return run


@pytest.mark.parametrize("norm", ["instance", "batch", "group"])
def test_identical_calls_launch_identical_grids_and_arguments(norm, monkeypatch):
    """No state carries from one call to the next: the same inputs give the same plan, the same grids and the same
    kernel arguments, from the first call on (a CUDA graph captured after one warm-up replays what eager runs)."""
    launches: list = []
    for name in ("_stats_partial_kernel", "_finalize_stats_kernel", "_modulate_fwd_kernel", "_backward_sums_kernel",
                 "_backward_dx_kernel", "_row_fwd_kernel", "_row_bwd_kernel", "_class_table_grad_kernel"):  # fmt: skip
        monkeypatch.setattr(launch, name, _Recorder(name, launches))
    x, gamma, beta = _inputs((2, 8, 6, 5), seed=10)
    calls = []
    for _ in range(2):
        launches.clear()
        y = modulated_norm(x, gamma, beta, norm=norm, num_groups=4 if norm == "group" else None)
        y.backward(torch.ones_like(y))
        calls.append(list(launches))
    assert calls[0] == calls[1]
    assert len(calls[0]) >= 2
    signature = _signature((2, 8, 6, 5), groups=4 if norm == "group" else None)
    assert make_plan(signature, H100) == make_plan(signature, H100)


def test_eager_calls_skip_the_dispatcher_and_traced_calls_go_through_it(monkeypatch):
    """Eager calls on plain tensors launch without the dispatcher: the forward from its prepared call, the backward
    through its op's launcher; tracing (make_fx, here) records the registered ops, so torch.compile and export see
    opaque ops with their fakes."""
    from torch.fx.experimental.proxy_tensor import make_fx

    direct = []
    monkeypatch.setattr(launch, "run_row_forward", lambda *a, _fn=launch.run_row_forward: direct.append(_fn) or _fn(*a))
    for op, fn in list(ops._LAUNCHERS.items()):
        monkeypatch.setitem(ops._LAUNCHERS, op, lambda *a, _fn=fn: direct.append(_fn) or _fn(*a))
    x, gamma, beta = _inputs((2, 3, 4, 5), seed=6)
    modulated_norm(x, gamma, beta).sum().backward()
    assert [fn.__name__ for fn in direct] == ["run_row_forward", "row_backward"]  # both called directly
    direct.clear()
    graph = make_fx(lambda x, g, b: modulated_norm(x, g, b))(x.detach(), gamma.detach(), beta)
    assert not [fn for fn in direct if fn.__name__ != "run_row_forward"]  # no direct launcher call: traced
    assert "spadenorm.row_forward" in str(graph.code)  # traced: through the registered op


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
    with torch.cuda.stream(stream):  # one warm-up compiles every kernel variant outside the capture
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
        with overridden(row_kernels=row_kernels):
            check_against_reference(x, gamma, beta, norm="instance")


def test_saved_tensors_handed_back_in_another_layout_get_their_own_backward_launch():
    """A saved-tensor hook may give x back in another memory format (``save_on_cpu`` restores channels_last as
    contiguous): the backward launches with the strides of what it got, also after a call of the same forward
    signature has run its backward without the hook."""
    x, gamma, beta = _inputs((2, 16, 4, 4), seed=11, channels_last=True)
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(12)).to(DEVICE)
    expected = torch.autograd.grad(
        modulated_norm_reference(x.double(), gamma.double(), beta.double(), norm="instance"), x, dy.double()
    )[0]

    def contiguous_x(t):
        return t.contiguous() if t.shape == x.shape and t.is_contiguous(memory_format=torch.channels_last) else t

    with overridden(row_kernels=True):
        plain = torch.autograd.grad(modulated_norm(x, gamma, beta), x, dy)[0]
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t, contiguous_x):
            y = modulated_norm(x, gamma, beta)
        hooked = torch.autograd.grad(y, x, dy)[0]
    torch.testing.assert_close(plain, expected.float(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(hooked, expected.float(), atol=1e-4, rtol=1e-4)


def test_symbolic_tracing_records_the_registered_ops():
    """Plans of symbolic shapes are computed without the caches (symbolic sizes are not hashable)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    x, gamma, beta = (t.detach() for t in _inputs((2, 3, 4, 5), seed=9))
    graph = make_fx(lambda x, g, b: modulated_norm(x, g, b), tracing_mode="symbolic")(x, gamma, beta)
    assert "spadenorm.row_forward" in str(graph.code)


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "dispatcher"])
def test_running_estimates_updated_in_place_bump_their_version(traced, monkeypatch):
    """The finalize kernel's in-place update is visible to autograd's version counters on both call paths."""
    if traced:  # what a traced call does: through the registered op
        monkeypatch.setattr(ops, "eager", lambda *tensors: False)
    norm = spadenorm.ParamFreeNorm(4, "batch").to(DEVICE)
    before = norm.running_mean._version, norm.running_var._version
    norm(torch.randn(2, 4, 3, 3, device=DEVICE))
    assert norm.running_mean._version > before[0]
    assert norm.running_var._version > before[1]


_DIRECT_LAUNCH_SCRIPT = r"""
import os, sys
os.environ.pop("TRITON_INTERPRET", None)
sys.path.insert(0, sys.argv[1])
import torch
import triton
from triton.runtime import driver
from benchmarks.stub_driver import HostOnlyDriver, NoLaunch
from benchmarks.variants import planned_as
from spadenorm.backends.triton import launcher, occupancy
from spadenorm.functional import modulated_norm

calls = []
NoLaunch.__call__ = lambda self, *args: calls.append(args)
driver.set_active(HostOnlyDriver(90))


def described(args):
    return [(tuple(a.shape), a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a for a in args]


with planned_as(occupancy.Device(132, occupancy.HOPPER)):
    x, gamma = torch.randn(2, 8, 6, 5), torch.randn(2, 8, 6, 5)
    with torch.no_grad():
        for _ in range(2):  # the first launch through kernel[grid], the second directly
            modulated_norm(x, gamma, None)
        assert launcher.DIRECT and len(launcher._VARIANTS) == 1, launcher._VARIANTS
        (variant,) = launcher._VARIANTS.values()
        assert variant.compiled is not None
        first, second = calls
        # grid and stream; the compiled function and its packed metadata; the hooks; the arguments
        assert first[:4] == second[:4]
        assert first[4] is second[4] and first[5] is second[5]
        assert [type(a) for a in first[7:9]] == [type(a) for a in second[7:9]]
        assert described(first[9:]) == described(second[9:]), (first[9:], second[9:])
        # launch metadata: only built while a hook is registered to read it, then as Triton builds it
        enter = triton.knobs.runtime.launch_enter_hook
        assert second[6] is None or type(second[6]) is type(first[6])
        hook = lambda metadata: None
        if hasattr(enter, "add"):  # Triton 3.9: a chain of hooks
            enter.add(hook)
        else:
            triton.knobs.runtime.launch_enter_hook = hook
        modulated_norm(x, gamma, None)
        assert calls[-1][6] is not None and type(calls[-1][6]) is type(first[6])
        if hasattr(enter, "remove"):
            enter.remove(hook)
        else:
            triton.knobs.runtime.launch_enter_hook = enter
        shifted = torch.randn(2 * 8 * 6 * 5 + 1)[1:].view(2, 8, 6, 5)  # 4 bytes past a 16-byte boundary
        modulated_norm(shifted, gamma, None)
        assert len(launcher._VARIANTS) == 2  # another specialization: its own variant, compiled on its own
        other = next(v for v in launcher._VARIANTS.values() if v is not variant)
        assert other.compiled is not None and other.compiled.hash != variant.compiled.hash
    calls.clear()
    x.requires_grad_(True)
    for _ in range(2):  # forward and backward with gradients: the backward's launch too
        modulated_norm(x, gamma, None).sum().backward()
    forward, backward, forward_again, backward_again = calls
    for a, b in ((forward, forward_again), (backward, backward_again)):
        assert a[:4] == b[:4] and a[4] is b[4]
        assert described(a[9:]) == described(b[9:])
print("ok")
"""


def test_the_cached_compiled_kernel_is_launched_with_what_tritons_own_launch_passes(tmp_path):
    """From the second launch of a signature on, the launcher calls the compiled kernel with exactly the arguments
    Triton's ``kernel[grid]`` passed it on the first; a misaligned input (which Triton specializes differently) gets
    a variant of its own. Compiled for sm_90 with Triton itself; only the device launch is stubbed."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "direct_launch.py"
    script.write_text(_DIRECT_LAUNCH_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(root)], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
