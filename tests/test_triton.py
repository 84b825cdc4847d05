"""The Triton kernels against the float64 reference: every statistics kind x modulation kind x dtype x layout.

Without CUDA they run on CPU tensors through the Triton interpreter (conftest sets ``TRITON_INTERPRET=1``), on small
shapes; tests marked ``cuda`` run realistic shapes on a GPU and skip elsewhere. The bound is flash-attention's:
``|kernel - ref64| <= 2 |ref_lowp - ref64| + atol``, for the output and every gradient.
"""

from __future__ import annotations

import pytest
import torch

import spadenorm
from spadenorm.functional import class_modulated_norm, modulated_norm
from spadenorm.reference import class_modulated_norm_reference
from spadenorm.testing import check_against_reference

pytest.importorskip("triton")
from spadenorm._core import NormSpec
from spadenorm.backends.triton import autograd, launch, ops, plan
from spadenorm.backends.triton.kernels.common import Strategy
from spadenorm.backends.triton.layout import cdiv
from spadenorm.backends.triton.plan import overridden

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
NORMS = [("instance", None), ("batch", None), ("sync_batch", None), ("group", 2), ("layer", None), ("none", None)]
MODULATIONS = ["spatial", "per_sample_channel", "per_channel", "absent"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(autouse=True)
def _triton_backend():
    with spadenorm.use_backend("triton"):
        yield


def _modulation(kind: str, shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator):
    n, c = shape[:2]
    shapes = {"spatial": shape, "per_sample_channel": (n, c, 1, 1), "per_channel": (c,)}
    if kind == "absent":
        return None
    return torch.randn(shapes[kind], generator=gen, dtype=torch.float64).to(DEVICE, dtype).requires_grad_(True)


def _check(x, gamma, beta, seed: int = 0, **kwargs):
    y = modulated_norm(x, gamma, beta, **kwargs)
    assert y.is_contiguous(memory_format=torch.channels_last) == x.is_contiguous(memory_format=torch.channels_last)
    check_against_reference(x, gamma, beta, seed=seed, **kwargs)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("modulation", MODULATIONS)
@pytest.mark.parametrize(("norm", "groups"), NORMS, ids=[n for n, _ in NORMS])
def test_matrix_against_reference(norm, groups, modulation, dtype, channels_last):
    gen = torch.Generator().manual_seed(0)
    shape = (3, 6, 5, 7)  # odd, non-power-of-two sizes
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 1).to(DEVICE, dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    gamma, beta = _modulation(modulation, shape, dtype, gen), _modulation(modulation, shape, dtype, gen)
    _check(x, gamma, beta, norm=norm, num_groups=groups)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("modulation", MODULATIONS)
@pytest.mark.parametrize(("norm", "groups"), [("instance", None), ("group", 3)])
def test_split_row_path_for_per_sample_norms(norm, groups, modulation, channels_last):
    """The partial-statistics path that per-sample norms take on a GPU when the row kernels would underfill it."""
    gen = torch.Generator().manual_seed(3)
    shape = (3, 6, 5, 7)
    x = (torch.randn(shape, generator=gen) * 2 + 1).to(DEVICE)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    gamma, beta = _modulation(modulation, shape, torch.float32, gen), _modulation(modulation, shape, torch.float32, gen)
    with overridden(row_kernels=False):
        _check(x, gamma, beta, norm=norm, num_groups=groups)


@pytest.mark.parametrize("row_kernels", [True, False], ids=["row_kernels", "split_row"])
@pytest.mark.parametrize(
    ("shape", "max_span", "channels_last"),
    [
        ((2, 10, 37, 57), 2048, False),  # S = 2109: spans of 2 x 1024-wide tiles, then a second part of 61
        ((2, 70, 9, 13), 64, True),  # 2 channel tiles of 64; S = 117: spans of 2 x 32 positions, 2 parts
    ],
    ids=["nchw", "channels_last"],
)
@pytest.mark.parametrize(("norm", "groups"), [("instance", None), ("batch", None), ("group", 5)])
def test_rows_longer_than_a_tile_and_split_across_programs(norm, groups, shape, max_span, channels_last, row_kernels):
    """Several tiles per program (Chan merges in the kernel) and, split-row, several programs per row."""
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=gen) + 30).to(DEVICE)  # |mean| >> std stresses the merges
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    gamma = torch.randn(shape, generator=gen).to(DEVICE).requires_grad_(True)
    beta = torch.randn(shape[1], generator=gen).to(DEVICE).requires_grad_(True)
    with overridden(max_span=max_span, row_kernels=row_kernels):
        _check(x, gamma, beta, norm=norm, num_groups=groups)
        if not row_kernels or norm == "batch":  # two spans of S, each of several tiles (the cap is two tiles long)
            spec = NormSpec(norm, groups)
            span = plan.plan_for(x, spec, True, False, False).forward[0].span
            assert cdiv(x[0, 0].numel(), span) == 2
            assert span == max_span


@pytest.mark.parametrize("row_kernels", [True, False], ids=["row_kernels", "split_row"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(("norm", "groups"), NORMS, ids=[n for n, _ in NORMS])
def test_second_modulation_in_the_same_launch(norm, groups, dtype, row_kernels):
    """(norm(x) * (1 + gamma) + beta) * (1 + scale) + shift with per-(n, c) scale and per-channel shift."""
    gen = torch.Generator().manual_seed(4)
    shape = (3, 6, 5, 7)
    x = (torch.randn(shape, generator=gen) * 2 + 1).to(DEVICE, dtype).requires_grad_(True)
    gamma, beta = (torch.randn(shape, generator=gen).to(DEVICE, dtype).requires_grad_(True) for _ in range(2))
    scale = torch.randn(3, 6, generator=gen).to(DEVICE, dtype).requires_grad_(True)
    shift = torch.randn(6, generator=gen).to(DEVICE, dtype).requires_grad_(True)
    with overridden(row_kernels=row_kernels):
        _check(x, gamma, beta, norm=norm, num_groups=groups, scale=scale, shift=shift)


@pytest.mark.parametrize("row_kernels", [True, False], ids=["row_kernels", "split_row"])
def test_second_modulation_with_class_tables_and_vectors(row_kernels):
    with overridden(row_kernels=row_kernels):
        _second_modulation_with_class_tables_and_vectors()


def _second_modulation_with_class_tables_and_vectors():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 20, 6, 9, generator=gen).to(DEVICE).requires_grad_(True)
    labels = torch.randint(0, 7, (2, 6, 9), generator=gen).to(DEVICE)
    tables = [torch.randn(7, 20, generator=gen).to(DEVICE).requires_grad_(True) for _ in range(2)]
    scale, shift = (torch.randn(2, 20, generator=gen).to(DEVICE).requires_grad_(True) for _ in range(2))
    y = class_modulated_norm(x, labels, *tables, scale=scale, shift=shift)
    dy = torch.randn(y.shape, generator=gen).to(DEVICE)
    grads = torch.autograd.grad(y, (x, *tables, scale, shift), dy)
    ref = class_modulated_norm_reference(x, labels, *tables, scale=scale, shift=shift)
    ref_grads = torch.autograd.grad(ref, (x, *tables, scale, shift), dy.double())
    torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=1e-5)
    for name, g, r in zip(("dx", "dgamma", "dbeta", "dscale", "dshift"), grads, ref_grads, strict=True):
        torch.testing.assert_close(g.double(), r.double(), atol=1e-4, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    vectors = (torch.randn(2, 20, 1, 1, generator=gen).to(DEVICE).requires_grad_(True) for _ in range(2))
    _check(x, *vectors, norm="instance", scale=scale, shift=None)


@pytest.mark.parametrize("rank", [3, 5])
def test_other_ranks(rank):
    shape = (2, 3, *(4, 5, 3)[: rank - 2])
    x, gamma = (torch.randn(shape, device=DEVICE, requires_grad=True) for _ in range(2))
    _check(x, gamma, None, norm="instance")


@pytest.mark.parametrize("row_kernels", [True, False], ids=["row_kernels", "split_row"])
@pytest.mark.parametrize(("norm", "groups"), [("instance", None), ("batch", None), ("group", 2)])
def test_volumes_in_channels_last_3d(norm, groups, row_kernels):
    """3-D volumes keep the channels_last_3d layout through the kernels, forward and backward."""
    gen = torch.Generator().manual_seed(6)
    shape = (2, 4, 3, 4, 5)
    x = torch.randn(shape, generator=gen).to(DEVICE).to(memory_format=torch.channels_last_3d).requires_grad_(True)
    gamma = torch.randn(shape, generator=gen).to(DEVICE).requires_grad_(True)
    beta = torch.randn(4, generator=gen).to(DEVICE).requires_grad_(True)
    with overridden(row_kernels=row_kernels):
        y = modulated_norm(x, gamma, beta, norm=norm, num_groups=groups)
        assert y.is_contiguous(memory_format=torch.channels_last_3d)
        check_against_reference(x, gamma, beta, norm=norm, num_groups=groups)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_class_tables_gathered_in_the_kernel(norm, channels_last):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 20, 6, 9, generator=gen).to(DEVICE)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    labels = torch.randint(0, 19, (2, 3, 9), generator=gen).to(DEVICE)  # resized to 6x9; 19 classes: BLOCK_K 32
    tables = [torch.randn(19, 20, generator=gen).to(DEVICE).requires_grad_(True) for _ in range(2)]
    y = class_modulated_norm(x, labels, *tables, norm=norm)
    dy = torch.randn(y.shape, generator=gen).to(DEVICE)
    grads = torch.autograd.grad(y, (x, *tables), dy)
    full_labels = spadenorm.functional.resize_labels(labels, (6, 9))
    ref = class_modulated_norm_reference(x, full_labels, *tables, norm=norm)
    ref_grads = torch.autograd.grad(ref, (x, *tables), dy.double())
    torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=1e-5)
    for name, g, r in zip(("dx", "dgamma_table", "dbeta_table"), grads, ref_grads, strict=True):
        torch.testing.assert_close(g.double(), r.double(), atol=1e-4, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("momentum", [0.1, None, 0.0, 1.0])
def test_running_statistics_match_batchnorm2d(momentum):
    torch.manual_seed(0)
    ours = spadenorm.ParamFreeNorm(5, "batch", momentum=momentum).to(DEVICE)
    theirs = torch.nn.BatchNorm2d(5, affine=False, momentum=momentum).to(DEVICE)
    for step in range(3):
        x = (torch.randn(3, 5, 4, 6) * (step + 1) + step).to(DEVICE)
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, theirs.running_mean, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ours.running_var, theirs.running_var, atol=1e-6, rtol=1e-6)
    ours.eval()
    theirs.eval()
    x = torch.randn(2, 5, 3, 3, device=DEVICE, requires_grad=True)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
    _check(x, torch.randn(2, 5, 3, 3, device=DEVICE, requires_grad=True), None, norm="batch",
           running_mean=ours.running_mean, running_var=ours.running_var, training=False)  # fmt: skip


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # eps=0 on the padded lanes, never stored
@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")  # the same lanes
@pytest.mark.parametrize("eps", [0.0, 1e-5, 10.0])
def test_eps_edge_cases(eps):
    x = torch.randn(2, 3, 4, 4, device=DEVICE, requires_grad=True)
    _check(x, None, None, norm="instance", eps=eps)


def test_non_contiguous_incoming_gradient():
    x = torch.randn(2, 3, 5, 7, device=DEVICE, requires_grad=True)
    gamma = torch.randn(2, 3, 5, 7, device=DEVICE, requires_grad=True)
    dy = torch.randn(2, 3, 7, 5, device=DEVICE).transpose(2, 3)  # not flattenable: copied inside
    grads = torch.autograd.grad(modulated_norm(x, gamma), (x, gamma), dy)
    with spadenorm.use_backend("torch"):
        expected = torch.autograd.grad(modulated_norm(x, gamma), (x, gamma), dy)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)


def _launches(x, norm="instance", groups=None, tables=False, need_z=False, training=True):
    """The plan of a call on x: its forward and backward launches as the ops take them."""
    return plan.plan_for(x, NormSpec(norm, groups), training, tables, need_z)


def test_opcheck_of_the_registered_ops():
    x = torch.randn(2, 4, 3, 5, device=DEVICE)
    gamma = torch.randn(2, 4, 3, 5, device=DEVICE)
    beta = torch.randn(1, 4, 1, 1, device=DEVICE)
    dy = torch.randn(2, 4, 3, 5, device=DEVICE)
    stats = torch.stack([torch.rand(2, 4, device=DEVICE) + 0.5, torch.randn(2, 4, device=DEVICE)])
    scale, shift = torch.randn(2, 4, device=DEVICE), torch.randn(1, 4, device=DEVICE)
    labels = torch.randint(0, 3, (2, 3, 5), device=DEVICE)
    tables = torch.randn(3, 4, device=DEVICE), torch.randn(3, 4, device=DEVICE)
    running = torch.rand(4, device=DEVICE)
    with overridden(max_span=8):  # two spans per row
        rows, batch = _launches(x), _launches(x, "batch")
        with overridden(row_kernels=False):
            split = _launches(x)
        table_rows = _launches(x, tables=True)
    assert rows.strategy in autograd.ROWS
    assert split.strategy == batch.strategy == Strategy.SPLIT
    row, (partial, finalize, modulate), (sums, dx) = list(rows.forward[0]), map(list, split.forward), batch.backward
    moments = torch.randn(2, 2, 4, partial[2], device=DEVICE).abs()
    partials = torch.randn(6, 2, 4, sums[2], device=DEVICE)
    coef = torch.randn(2, 1, 4, device=DEVICE)
    cases = [
        (ops.partial_stats, (x, partial)),
        (ops.finalize_stats, (moments, None, None, None, 0.0, 1e-5, 15, False, finalize)),
        (ops.finalize_stats, (moments, running.clone(), running.clone(), None, 0.1, 1e-5, 15, True,
                              list(batch.forward[1]))),
        (ops.finalize_stats, (moments, running.clone(), running.clone(), torch.tensor(0.5, device=DEVICE), 0.0, 1e-5,
                              15, True, list(batch.forward[1]))),
        (ops.row_forward, (x, gamma, beta, None, None, None, 1e-5, row)),
        (ops.row_forward, (x, None, None, None, scale, shift, 1e-5, row)),
        (ops.row_forward, (x, *tables, labels, scale, None, 1e-5, list(table_rows.forward[0]))),
        (ops.modulate, (x, gamma, beta, None, scale, shift, stats, modulate)),
        (ops.modulate, (x, None, beta, None, None, None, stats[:, :1], modulate)),
        (ops.modulate, (x, *tables, labels, None, shift, stats, modulate)),
        (ops.backward_sums, (dy, x, gamma, beta, None, scale, stats, True, list(sums))),
        (ops.backward_sums, (dy, x, gamma, None, None, None, stats, False, list(sums))),
        (ops.backward_dx, (dy, x, gamma, gamma, None, scale, stats, coef, None, True, True, True, True, list(dx))),
        (ops.backward_dx, (dy, x, None, None, None, None, stats, None, None, False, True, False, False, list(dx))),
        (ops.backward_dx, (dy, x, gamma, None, None, None, stats[:, :1], None, partials, True, True, False, False,
                           list(dx))),
        (ops.backward_dx, (dy, x, gamma, None, None, None, stats, None, partials, False, True, False, False,
                           list(split.backward[1]))),
        (ops.row_backward, (dy, x, gamma, gamma, None, scale, stats, True, True, True, True, list(rows.backward[0]))),
        (ops.row_backward, (dy, x, tables[0], None, labels, None, stats, True, False, False, False,
                            list(table_rows.backward[0]))),
        (ops.class_table_grads, (dy, x, labels, scale, stats, 3, list(table_rows.table_grad))),
    ]  # fmt: skip
    for op, args in cases:
        torch.library.opcheck(op, args)


def test_every_launch_runs_under_the_device_guard_of_x(monkeypatch):
    """Triton launches on the current device: each call makes x's device current once, for forward and for
    backward, around every launch it makes directly (registered ops guard themselves)."""
    guarded: list[torch.device] = []
    depth = [0]

    class RecordingGuard:
        def __init__(self, t):
            self.device = t.device

        def __enter__(self):
            guarded.append(self.device)
            depth[0] += 1

        def __exit__(self, *exc):
            depth[0] -= 1

    launched = []
    kernel_launch = launch._launch

    def checked(kernel, variant, args):  # every launch of every launcher, direct or through a registered op
        assert depth[0] == 1, f"{kernel.fn.__name__} launched outside the device guard"
        launched.append(kernel.fn.__name__)
        return kernel_launch(kernel, variant, args)

    monkeypatch.setattr(ops, "device_guard", RecordingGuard)
    monkeypatch.setattr(launch, "_launch", checked)
    x = torch.randn(2, 4, 3, 5, device=DEVICE, requires_grad=True)
    labels = torch.randint(0, 3, (2, 3, 5), device=DEVICE)
    tables = [torch.randn(3, 4, device=DEVICE, requires_grad=True) for _ in range(2)]
    for norm, row_kernels in (("instance", True), ("instance", False), ("batch", None)):
        with overridden(row_kernels=row_kernels):
            class_modulated_norm(x, labels, *tables, norm=norm).sum().backward()
    # row: forward, backward, tables; split-row instance and batch: stats, finalize, modulate, sums, dx, tables each
    assert len(launched) == 3 + 2 * 6
    assert len(guarded) == 3 * 2  # one per forward and one per backward
    assert all(d == x.device for d in guarded)


def test_device_guard_makes_the_tensors_gpu_current(monkeypatch):
    entered = []

    class FakeCudaDevice:
        def __init__(self, device):
            entered.append(device)

    class OnGpu:
        is_cuda = True

        def __init__(self, index):
            self.device = torch.device("cuda", index)

    monkeypatch.setattr(torch.cuda, "device", FakeCudaDevice)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    ops.device_guard(OnGpu(1))
    assert entered == [torch.device("cuda", 1)]
    with ops.device_guard(OnGpu(0)):  # already current: nothing to switch
        pass
    with ops.device_guard(torch.empty(1)):  # CPU (interpreter): nothing to switch
        pass
    assert entered == [torch.device("cuda", 1)]


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_kernels_launch_on_the_device_of_x_not_the_current_one():
    torch.cuda.set_device(0)
    x = torch.randn(2, 8, 16, 16, device="cuda:1", requires_grad=True)
    gamma = torch.randn(2, 8, 16, 16, device="cuda:1", requires_grad=True)
    for norm in ("instance", "batch"):
        _check(x, gamma, None, norm=norm)
    assert torch.cuda.current_device() == 0


class _RecordedLaunch:
    """Stands in for a kernel: records its name and the grid of each launch and runs nothing."""

    def __init__(self, name, grids):
        self.name, self.grids = name, grids

    def __getitem__(self, grid):
        self.grids.append((self.name, grid))
        return lambda *args, **kwargs: None


KERNELS = ("_stats_partial_kernel", "_finalize_stats_kernel", "_modulate_fwd_kernel", "_backward_sums_kernel",
           "_backward_dx_kernel", "_row_fwd_kernel", "_row_bwd_kernel", "_class_table_grad_kernel")  # fmt: skip


def test_launch_grids_stay_within_cuda_limits_for_huge_batches(monkeypatch):
    """CUDA caps grid axes 1 and 2 at 65535 programs: a batch of 70000 must not land there, on any path."""
    grids: list[tuple[str, tuple[int, ...]]] = []
    for name in KERNELS:
        monkeypatch.setattr(launch, name, _RecordedLaunch(name, grids))
    n = 70_000
    x = torch.zeros(n, 2, 4, device=DEVICE, requires_grad=True)
    gamma = torch.zeros(n, 2, 4, device=DEVICE, requires_grad=True)
    scale = torch.zeros(n, 2, device=DEVICE, requires_grad=True)
    labels = torch.zeros(n, 4, dtype=torch.long, device=DEVICE)
    tables = [torch.zeros(3, 2, device=DEVICE, requires_grad=True) for _ in range(2)]
    cases = [({"row_strategy": "resident"}, "instance"), ({"row_strategy": "persistent"}, "instance"),
             ({"row_strategy": "swept"}, "layer"), ({"row_kernels": False}, "instance"), ({}, "batch")]  # fmt: skip
    for fields, norm in cases:
        with overridden(**fields):
            modulated_norm(x, gamma, gamma, norm=norm, scale=scale, shift=scale).sum().backward()
            class_modulated_norm(x, labels, *tables, norm=norm).sum().backward()
    assert {name for name, _ in grids} == set(KERNELS)
    for _, grid in grids:
        assert grid[0] < 2**31, grid
        assert all(size <= 65535 for size in grid[1:]), grid


def test_float64_is_refused_with_a_clear_error():
    with pytest.raises(spadenorm.BackendUnavailableError, match=r"float16, bfloat16 or float32, got torch\.float64"):
        modulated_norm(torch.randn(2, 3, 4, 4, dtype=torch.float64, device=DEVICE))


# The odd shape first: sizes that are multiples of nothing exercise every mask, and a step that runs out of time
# keeps it. Inputs are drawn on the GPU (drawing them on the host and copying costs seconds at these sizes).
CUDA_SHAPES = [(2, 3, 1000, 1001), (8, 1024, 16, 16), (8, 256, 128, 128), (4, 128, 256, 512)]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("norm", "groups"), NORMS, ids=[n for n, _ in NORMS])
@pytest.mark.parametrize("shape", CUDA_SHAPES)
def test_cuda_realistic_shapes(shape, norm, groups, dtype):
    gen = torch.Generator(device="cuda").manual_seed(0)
    x, gamma, beta = (torch.randn(shape, generator=gen, device="cuda").to(dtype).requires_grad_(True) for _ in range(3))
    _check(x, gamma, beta, norm=norm, num_groups=groups if shape[1] % 2 == 0 else (1 if groups else None))
