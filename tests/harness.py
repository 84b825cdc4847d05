"""Shared test harness: dtypes and tolerances against torch's own kernels (the reference bound is public, in
:mod:`spadenorm.testing`)."""

from __future__ import annotations

import torch

# Direct comparison against torch's own kernels of the same precision.
TORCH_TOL = {
    torch.float64: {"atol": 1e-10, "rtol": 1e-10},
    torch.float32: {"atol": 2e-5, "rtol": 1e-5},
    torch.float16: {"atol": 2e-2, "rtol": 1e-2},
    torch.bfloat16: {"atol": 1e-1, "rtol": 5e-2},
}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
