"""modulated_norm against torch's own norms and the float64 reference, over shapes, dtypes and layouts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from harness import DTYPES, TORCH_TOL
from hypothesis import given
from hypothesis import strategies as st

import spadenorm
from spadenorm.functional import modulated_norm
from spadenorm.reference import modulated_norm_reference
from spadenorm.testing import check_against_reference

NORMS = ["instance", "batch", "sync_batch", "group", "layer", "none"]
MODULATIONS = ["none", "spatial", "per_sample_channel", "per_channel", "channel_vector", "row_broadcast"]
SECOND_MODULATIONS = ["none", "none", "per_sample_channel_2d", "channel_vector", "per_sample_channel"]


def modulation(kind: str, shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor | None:
    n, c, *spatial = shape
    ones = [1] * len(spatial)
    shapes = {
        "per_sample_channel_2d": (n, c),  # the form of a diffusion model's timestep scale/shift
        "spatial": shape,
        "per_sample_channel": (n, c, *ones),
        "per_channel": (1, c, *ones),
        "channel_vector": (c,),
        "row_broadcast": (1, c, *spatial[:-1], 1),  # broadcasts over N and the last spatial dim
    }
    if kind == "none":
        return None
    return torch.randn(shapes[kind], generator=gen, dtype=torch.float64).to(dtype)


@st.composite
def cases(draw, norms=NORMS, dtypes=DTYPES):
    norm = draw(st.sampled_from(norms))
    rank = draw(st.sampled_from([3, 4, 4, 4, 5]))
    n = draw(st.integers(1, 4))
    c = draw(st.integers(1, 9))
    spatial = [draw(st.integers(1, 7)) for _ in range(rank - 2)]
    count = {"instance": math.prod(spatial), "batch": n * math.prod(spatial), "sync_batch": n * math.prod(spatial)}
    if count.get(norm, 2) < 2:  # torch refuses statistics over one value in training
        spatial[-1] += 1
    groups = None
    if norm == "group":
        groups = draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]))
        if n * c // groups * math.prod(spatial) == 1:  # F.group_norm refuses this size in training
            spatial[-1] += 1
    return {
        "shape": (n, c, *spatial),
        "norm": norm,
        "num_groups": groups,
        "dtype": draw(st.sampled_from(dtypes)),
        "channels_last": rank == 4 and draw(st.booleans()),
        "gamma": draw(st.sampled_from(MODULATIONS)),
        "beta": draw(st.sampled_from(MODULATIONS)),
        "scale": draw(st.sampled_from(SECOND_MODULATIONS)),
        "shift": draw(st.sampled_from(SECOND_MODULATIONS)),
        "seed": draw(st.integers(0, 2**16)),
        "offset": draw(st.sampled_from([0.0, 3.0, -50.0])),  # large means stress the centred variance
    }


def make_inputs(case):
    gen = torch.Generator().manual_seed(case["seed"])
    x = (torch.randn(case["shape"], generator=gen, dtype=torch.float64) + case["offset"]).to(case["dtype"])
    if case["channels_last"]:
        x = x.to(memory_format=torch.channels_last)
    gamma = modulation(case["gamma"], case["shape"], case["dtype"], gen)
    beta = modulation(case["beta"], case["shape"], case["dtype"], gen)
    return x, gamma, beta


def second_modulation(case):
    """scale and shift of the case (or None), in the case's dtype, drawn after x, gamma and beta."""
    gen = torch.Generator().manual_seed(case["seed"] + 7)
    return tuple(modulation(case[k], case["shape"], case["dtype"], gen) for k in ("scale", "shift"))


def kwargs(case):
    return {"norm": case["norm"], "num_groups": case["num_groups"]}


def torch_norm(x: torch.Tensor, norm: str, num_groups: int | None) -> torch.Tensor:
    """torch's own kernels for each statistics kind."""
    if norm == "instance":
        return F.instance_norm(x)
    if norm in ("batch", "sync_batch"):
        return F.batch_norm(x, None, None, training=True)
    if norm == "group":
        return F.group_norm(x, num_groups)
    if norm == "layer":
        return F.layer_norm(x, x.shape[1:])
    return x


def explicit_modulation(x_hat, gamma, beta, scale=None, shift=None):
    c_shape = (1, -1) + (1,) * (x_hat.dim() - 2)

    def as_rank(t):
        if t.dim() == 1:
            return t.reshape(c_shape)
        return t.reshape(t.shape[:2] + (1,) * (x_hat.dim() - 2)) if t.dim() == 2 else t

    if gamma is not None:
        x_hat = x_hat * (1 + as_rank(gamma))
    if beta is not None:
        x_hat = x_hat + as_rank(beta)
    if scale is not None:
        x_hat = x_hat * (1 + as_rank(scale))
    if shift is not None:
        x_hat = x_hat + as_rank(shift)
    return x_hat


@given(cases(dtypes=[torch.float32, torch.float64]))
def test_forward_matches_torch_norms(case):
    x, gamma, beta = make_inputs(case)
    scale, shift = second_modulation(case)
    y = modulated_norm(x, gamma, beta, scale=scale, shift=shift, **kwargs(case))
    expected = explicit_modulation(torch_norm(x, case["norm"], case["num_groups"]), gamma, beta, scale, shift)
    tol = TORCH_TOL[case["dtype"]]
    scale = 1 + abs(case["offset"]) * (case["norm"] == "none")
    torch.testing.assert_close(y, expected, atol=tol["atol"] * scale, rtol=tol["rtol"])


@given(cases())
def test_forward_and_gradients_within_reference_bound(case):
    x, gamma, beta = make_inputs(case)
    scale, shift = second_modulation(case)
    for t in (x, gamma, beta, scale, shift):
        if t is not None:
            t.requires_grad_(True)
    check_against_reference(x, gamma, beta, seed=case["seed"] + 1, scale=scale, shift=shift, **kwargs(case))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm", NORMS)
def test_output_dtype_shape_and_memory_format(norm, dtype):
    x = torch.randn(2, 4, 5, 6, dtype=dtype).to(memory_format=torch.channels_last)
    gamma = torch.randn(2, 4, 5, 6, dtype=dtype)  # a contiguous map must not change the output's layout
    y = modulated_norm(x, gamma, gamma, norm=norm, num_groups=2 if norm == "group" else None)
    assert y.dtype == dtype
    assert y.shape == x.shape
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("norm", NORMS)
def test_channels_last_3d_volumes_keep_their_layout(norm):
    x = torch.randn(2, 4, 3, 4, 5).to(memory_format=torch.channels_last_3d)
    gamma = torch.randn(2, 4, 3, 4, 5)
    y = modulated_norm(x, gamma, gamma, norm=norm, num_groups=2 if norm == "group" else None)
    assert y.is_contiguous(memory_format=torch.channels_last_3d)
    expected = modulated_norm(x.contiguous(), gamma, gamma, norm=norm, num_groups=2 if norm == "group" else None)
    torch.testing.assert_close(y, expected)


def test_mixed_dtypes_follow_type_promotion():
    """Under autocast a conv can hand bf16 gamma/beta to an fp32 x: the result is fp32, as the original formula."""
    x = torch.randn(2, 3, 4, 4)
    gamma = torch.randn(2, 3, 4, 4, dtype=torch.bfloat16)
    y = modulated_norm(x, gamma, gamma)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, F.instance_norm(x) * (1 + gamma.float()) + gamma.float())


@pytest.mark.parametrize("norm", ["instance", "batch", "group", "layer"])
def test_constant_input_normalizes_to_zero(norm):
    """Zero variance: rstd = 1/sqrt(eps) times a (rounding-level) deviation, so beta is left; no NaN.

    The rounding of the fp32 mean (a few ulp of 7.25) is amplified by rstd = 316, hence atol 1e-3.
    """
    x = torch.full((2, 4, 3, 3), 7.25, requires_grad=True)
    beta = torch.randn(2, 4, 3, 3)
    y = modulated_norm(x, torch.randn(2, 4, 3, 3), beta, norm=norm, num_groups=2 if norm == "group" else None)
    torch.testing.assert_close(y, beta, atol=1e-3, rtol=0)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_batch_norm_with_one_spatial_element():
    """H*W = 1 is fine for batch statistics as long as N > 1 (the SPADE generator's 1x1 layers at small crops)."""
    x = torch.randn(5, 3, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(modulated_norm(x, norm="batch"), F.batch_norm(x, None, None, training=True))


def test_zero_eps_and_large_eps():
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    for eps in (0.0, 10.0):
        torch.testing.assert_close(modulated_norm(x, eps=eps), F.instance_norm(x, eps=eps))


def test_non_contiguous_input_and_gradient():
    """A transposed x and a non-contiguous incoming gradient give the same results as dense ones."""
    base = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    x = base.transpose(2, 3).requires_grad_(True)  # (2, 3, 5, 7), non-contiguous
    x_dense = x.detach().contiguous().requires_grad_(True)
    gamma = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    dy = torch.randn(2, 3, 7, 5, dtype=torch.float64).transpose(2, 3)
    modulated_norm(x, gamma, norm="group", num_groups=3).backward(dy)
    modulated_norm(x_dense, gamma, norm="group", num_groups=3).backward(dy.contiguous())
    torch.testing.assert_close(x.grad, x_dense.grad)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize(("norm", "groups"), [("instance", None), ("group", 2), ("batch", None), ("layer", None)])
def test_large_low_precision_activations_keep_finite_exact_statistics(norm, groups, dtype, backend):
    """|x| around 300: x**2 overflows fp16 (max 65504); statistics are accumulated in fp32, centred."""
    if backend == "triton":
        pytest.importorskip("triton")
    gen = torch.Generator().manual_seed(0)
    x = (300 + torch.randn(2, 4, 6, 7, generator=gen, dtype=torch.float64)).to(dtype).requires_grad_(True)
    gamma = torch.randn(2, 4, 6, 7, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True)
    with spadenorm.use_backend(backend):
        y = modulated_norm(x, gamma, None, norm=norm, num_groups=groups)
        (dx,) = torch.autograd.grad(y.float().square().sum(), x)
    ref = modulated_norm_reference(x, gamma, None, norm=norm, num_groups=groups)  # float64, exact inputs
    (dx_ref,) = torch.autograd.grad(ref.square().sum(), x)
    assert torch.isfinite(y).all()
    assert torch.isfinite(dx).all()
    tol = {torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    torch.testing.assert_close(y.double(), ref, atol=tol, rtol=tol)
    torch.testing.assert_close(dx.double(), dx_ref.double(), atol=tol * 10, rtol=tol)


def test_autocast_output_dtype_follows_torchs_own_norms(monkeypatch):
    """CPU autocast keeps x's dtype, as torch's norms do; under CUDA autocast, group and layer statistics come out in
    float32 (autocast's float32 list), so the result is float32 like the original formulation's."""
    x = torch.randn(2, 4, 5, 5, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for norm in ("instance", "group", "batch", "layer"):
            groups = 2 if norm == "group" else None
            assert modulated_norm(x, norm=norm, num_groups=groups).dtype == F.group_norm(x, 2).dtype == torch.bfloat16
    from spadenorm._core import NormSpec, normalized_dtype_under_autocast

    class OnGpu:
        dtype = torch.float16
        device = torch.device("cuda")

    monkeypatch.setattr(torch, "is_autocast_enabled", lambda device_type=None: device_type == "cuda")
    assert normalized_dtype_under_autocast(OnGpu(), NormSpec("group", 2)) == torch.float32
    assert normalized_dtype_under_autocast(OnGpu(), NormSpec("layer")) == torch.float32
    assert normalized_dtype_under_autocast(OnGpu(), NormSpec("instance")) == torch.float16
    assert normalized_dtype_under_autocast(OnGpu(), NormSpec("batch")) == torch.float16
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda device_type=None: False)
    assert normalized_dtype_under_autocast(OnGpu(), NormSpec("group", 2)) == torch.float16
