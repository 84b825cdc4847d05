"""The Triton kernels against the float64 reference: every statistics kind x modulation kind x dtype x layout.

Without CUDA they run on CPU tensors through the Triton interpreter (conftest sets ``TRITON_INTERPRET=1``), on small
shapes; tests marked ``cuda`` run realistic shapes on a GPU and skip elsewhere. The bound is flash-attention's:
``|kernel - ref64| <= 2 |ref_lowp - ref64| + atol``, for the output and every gradient.
"""

from __future__ import annotations

import pytest
import torch
from harness import assert_within_bound

import spadenorm
from spadenorm.functional import class_modulated_norm, modulated_norm
from spadenorm.reference import class_modulated_norm_reference, modulated_norm_reference

pytest.importorskip("triton")
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
    inputs = [t for t in (x, gamma, beta) if t is not None]
    y = modulated_norm(x, gamma, beta, **kwargs)
    assert y.is_contiguous(memory_format=torch.channels_last) == x.is_contiguous(memory_format=torch.channels_last)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(DEVICE)
    grads = torch.autograd.grad(y, inputs, dy.to(y.dtype))
    ref64 = modulated_norm_reference(x, gamma, beta, upcast=True, **kwargs)
    grads64 = torch.autograd.grad(ref64, inputs, dy)
    ref_lowp = modulated_norm_reference(x, gamma, beta, upcast=False, **kwargs)
    grads_lowp = torch.autograd.grad(ref_lowp, inputs, dy.to(ref_lowp.dtype))
    assert_within_bound(y, ref64, ref_lowp, "y")
    for name, g, g64, glp in zip(("dx", "dgamma", "dbeta"), grads, grads64, grads_lowp, strict=False):
        assert_within_bound(g, g64, glp, name)


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
def test_two_phase_path_for_per_sample_norms(norm, groups, modulation, channels_last, monkeypatch):
    """The partial-statistics path that per-sample norms take on a GPU when the row kernels would underfill it."""
    from spadenorm.ops import fused

    monkeypatch.setattr(fused, "USE_ROW_KERNELS", [False])
    gen = torch.Generator().manual_seed(3)
    shape = (3, 6, 5, 7)
    x = (torch.randn(shape, generator=gen) * 2 + 1).to(DEVICE)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    gamma, beta = _modulation(modulation, shape, torch.float32, gen), _modulation(modulation, shape, torch.float32, gen)
    _check(x, gamma, beta, norm=norm, num_groups=groups)


@pytest.mark.parametrize("row_kernels", [True, False], ids=["row_kernels", "two_phase"])
@pytest.mark.parametrize(
    ("shape", "max_span", "channels_last"),
    [
        ((2, 10, 37, 57), 2048, False),  # S = 2109: spans of 2 x 1024-wide tiles, then a second part of 61
        ((2, 70, 9, 13), 64, True),  # 2 channel tiles of 64; S = 117: spans of 2 x 32 positions, 2 parts
    ],
    ids=["nchw", "channels_last"],
)
@pytest.mark.parametrize(("norm", "groups"), [("instance", None), ("batch", None), ("group", 5)])
def test_rows_longer_than_a_tile_and_split_across_programs(
    norm, groups, shape, max_span, channels_last, row_kernels, monkeypatch
):
    """Several tiles per program (Chan merges in the kernel) and, two-phase, several programs per row (in torch)."""
    from spadenorm.ops import fused

    monkeypatch.setattr(fused, "MAX_SPAN", [max_span])
    monkeypatch.setattr(fused, "USE_ROW_KERNELS", [row_kernels])
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=gen) + 30).to(DEVICE)  # |mean| >> std stresses the merges
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    gamma = torch.randn(shape, generator=gen).to(DEVICE).requires_grad_(True)
    beta = torch.randn(shape[1], generator=gen).to(DEVICE).requires_grad_(True)
    _check(x, gamma, beta, norm=norm, num_groups=groups)
    if not row_kernels:
        tiles = fused._reduction_tiling(x, fused.strides3(x))
        assert tiles.parts(x[0, 0].numel()) == 2
        assert tiles.span >= 2 * tiles.block_s


@pytest.mark.parametrize("rank", [3, 5])
def test_other_ranks(rank):
    shape = (2, 3, *(4, 5, 3)[: rank - 2])
    x, gamma = (torch.randn(shape, device=DEVICE, requires_grad=True) for _ in range(2))
    _check(x, gamma, None, norm="instance")


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


def test_opcheck_of_the_registered_ops():
    from spadenorm.ops.fused import fused_modulate, fused_norm_bwd, partial_stats_op

    x = torch.randn(2, 4, 3, 5, device=DEVICE, requires_grad=True)
    gamma = torch.randn(2, 4, 3, 5, device=DEVICE, requires_grad=True)
    beta = torch.randn(1, 4, 1, 1, device=DEVICE, requires_grad=True)
    scale, shift = torch.rand(2, 4, device=DEVICE) + 0.5, torch.randn(2, 4, device=DEVICE)
    torch.library.opcheck(partial_stats_op, (x.detach(),))
    torch.library.opcheck(fused_modulate, (x, gamma, beta, None, scale, shift, "instance", 0, 1e-5, True, ""))
    torch.library.opcheck(fused_modulate, (x, gamma, beta, None, None, None, "instance", 0, 1e-5, True, ""))
    torch.library.opcheck(fused_modulate, (x, gamma, None, None, None, None, "group", 2, 1e-5, True, ""))
    labels = torch.randint(0, 3, (2, 3, 5), device=DEVICE)
    tables = (
        torch.randn(3, 4, device=DEVICE, requires_grad=True),
        torch.randn(3, 4, device=DEVICE, requires_grad=True),
    )
    torch.library.opcheck(fused_modulate, (x, *tables, labels, None, None, "instance", 0, 1e-5, True, ""))
    dy = torch.randn(2, 4, 3, 5, device=DEVICE)
    torch.library.opcheck(
        fused_norm_bwd,
        (dy, x.detach(), gamma.detach(), None, scale, shift, "instance", 0, 0, True, "", True, True, False),
    )


def test_compile_spade_block_fullgraph_aot_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = spadenorm.SPADE(8, 5, hidden_channels=16).to(DEVICE)
    x = torch.randn(2, 8, 6, 6, device=DEVICE, requires_grad=True)
    labels = torch.randint(0, 5, (2, 6, 6), device=DEVICE)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    y = compiled(x, labels)
    (dx,) = torch.autograd.grad(y.square().sum(), x)
    with spadenorm.use_backend("torch"):
        y_ref = layer(x, labels)
        (dx_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dx, dx_ref, atol=1e-4, rtol=1e-4)


def test_float64_is_refused_with_a_clear_error():
    with pytest.raises(spadenorm.BackendUnavailableError, match=r"float16, bfloat16 or float32, got torch\.float64"):
        modulated_norm(torch.randn(2, 3, 4, 4, dtype=torch.float64, device=DEVICE))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("norm", "groups"), NORMS, ids=[n for n, _ in NORMS])
@pytest.mark.parametrize("shape", [(8, 1024, 16, 16), (8, 256, 128, 128), (4, 128, 256, 512), (2, 3, 1000, 1001)])
def test_cuda_realistic_shapes(shape, norm, groups, dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).to("cuda", dtype).requires_grad_(True)
    gamma = torch.randn(shape, generator=gen).to("cuda", dtype).requires_grad_(True)
    beta = torch.randn(shape, generator=gen).to("cuda", dtype).requires_grad_(True)
    _check(x, gamma, beta, norm=norm, num_groups=groups if shape[1] % 2 == 0 else (1 if groups else None))


@pytest.mark.slow
def test_compile_spade_block_fullgraph_inductor():
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = spadenorm.SPADE(8, 5, norm="batch", hidden_channels=16).to(DEVICE)
    reference = spadenorm.SPADE(8, 5, norm="batch", hidden_channels=16).to(DEVICE)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, 8, 6, 6, device=DEVICE, requires_grad=True)
    labels = torch.randint(0, 5, (2, 6, 6), device=DEVICE)
    compiled = torch.compile(layer, fullgraph=True, backend="inductor")
    y = compiled(x, labels)
    (dx,) = torch.autograd.grad(y.square().sum(), x)
    with spadenorm.use_backend("torch"):
        y_ref = reference(x, labels)
        (dx_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dx, dx_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(layer.param_free_norm.running_var, reference.param_free_norm.running_var)
