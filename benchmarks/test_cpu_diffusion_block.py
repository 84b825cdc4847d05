"""CPU forward+backward of the normalization in today's conditional models, spadenorm against the eager formula.

* ``diffusion``: a semantic diffusion block's normalization (SDM): GroupNorm(32) statistics, spatial gamma/beta from
  the SPADE convs, then the timestep modulation per (n, c); C=256, 64x64, batch 2, fp32. Eager:
  ``(F.group_norm(x, 32) * (1 + gamma) + beta) * (1 + scale) + shift``. spadenorm: one
  ``modulated_norm(..., scale=scale, shift=shift)`` call.
* ``volume``: 3-D instance statistics, C=64, 32x64x64, batch 1 (MONAI / brainSPADE-style volumes). Eager:
  ``F.instance_norm(x) * (1 + gamma) + beta``.

Gradients flow to every input (x, gamma, beta, scale, shift). ``extra_info`` records the bytes saved for backward.

Run: ``python -m pytest benchmarks/test_cpu_diffusion_block.py -p no:randomly --benchmark-enable
--benchmark-json=benchmarks/results/cpu_diffusion.json``, then ``python benchmarks/summarize.py`` on that file.
"""

from __future__ import annotations

import pytest
import torch

from spadenorm.functional import modulated_norm
from spadenorm.testing import saved_tensor_bytes

from .shapes import CONDITIONAL_MODELS, conditional_original


def original(x, gamma, beta, scale, shift, norm, num_groups):
    return conditional_original(x, gamma, beta, scale, shift, norm, num_groups)


def spadenorm(x, gamma, beta, scale, shift, norm, num_groups):
    return modulated_norm(x, gamma, beta, norm=norm, num_groups=num_groups, scale=scale, shift=shift)


@pytest.mark.parametrize("case", list(CONDITIONAL_MODELS))
@pytest.mark.parametrize("impl", [original, spadenorm], ids=["original", "spadenorm"])
def test_forward_backward(benchmark, impl, case):
    torch.manual_seed(0)
    config = CONDITIONAL_MODELS[case]
    shape = config["shape"]
    x, gamma, beta = (torch.randn(shape, requires_grad=True) for _ in range(3))
    scale = shift = None
    if config["second"]:
        scale, shift = (torch.randn(shape[:2], requires_grad=True) for _ in range(2))
    inputs = [t for t in (x, gamma, beta, scale, shift) if t is not None]
    dy = torch.randn(shape)
    args = (x, gamma, beta, scale, shift, config["norm"], config["num_groups"])

    def step():
        for t in inputs:
            t.grad = None
        impl(*args).backward(dy)

    benchmark.group = f"{case} {config['norm']} {'x'.join(map(str, shape))}"
    benchmark.extra_info.update(
        shape=list(shape),
        norm=config["norm"],
        impl=impl.__name__,
        saved_bytes=saved_tensor_bytes(impl, *args),
        activation_bytes=x.numel() * x.element_size(),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    )
    benchmark(step)
