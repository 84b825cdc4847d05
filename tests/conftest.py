"""pytest configuration: hypothesis profiles and per-test backend reset (the harness is in harness.py)."""

from __future__ import annotations

import os

import torch

# Without a GPU the Triton kernels run on CPU tensors through the interpreter, which reads this variable when the
# kernels are defined: set it before anything imports spadenorm.backends.triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "spadenorm", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "spadenorm"))


@pytest.fixture(autouse=True)
def _restore_backend():
    import spadenorm

    yield
    spadenorm.set_backend(None)
