"""Shared test harness: tolerances and the reference error bound."""

from __future__ import annotations

import torch

# Absolute slack added to the relative bound, per dtype (covers values near zero).
ATOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}
# Direct comparison against torch's own kernels of the same precision.
TORCH_TOL = {
    torch.float64: {"atol": 1e-10, "rtol": 1e-10},
    torch.float32: {"atol": 2e-5, "rtol": 1e-5},
    torch.float16: {"atol": 2e-2, "rtol": 1e-2},
    torch.bfloat16: {"atol": 1e-1, "rtol": 5e-2},
}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def assert_within_bound(actual: torch.Tensor, ref64: torch.Tensor, ref_lowp: torch.Tensor, what: str = "") -> None:
    """flash-attention's bound: |actual - ref64| <= 2 |ref_lowp - ref64| + atol, elementwise.

    ``ref_lowp`` is the plain reference run in ``actual``'s precision, so the bound scales from fp64 to bf16.
    """
    assert actual.shape == ref64.shape, (what, actual.shape, ref64.shape)
    assert actual.dtype == ref_lowp.dtype, (what, actual.dtype, ref_lowp.dtype)
    err = (actual.double() - ref64).abs()
    allowed = 2 * (ref_lowp.double() - ref64).abs() + ATOL[actual.dtype] * (1 + ref64.abs())
    worst = (err - allowed).argmax()
    assert bool((err <= allowed).all()), (
        f"{what}: error {err.flatten()[worst].item():.3g} exceeds bound {allowed.flatten()[worst].item():.3g} "
        f"at flat index {worst.item()} (max error {err.max().item():.3g})"
    )
