"""CPU forward+backward of instance- and batch-norm SPADE modulation: spadenorm against the original formulation.

The original formulation is ``norm(x) * (1 + gamma) + beta`` in eager PyTorch (``F.instance_norm`` /
``F.batch_norm``), as the original SPADE layer computes it. Each benchmark times one forward and one backward
(gradients for x, gamma and beta) at batch 1 on the ADE20K generator's layer shapes. ``extra_info`` records the bytes
saved for backward, measured with ``torch.autograd.graph.saved_tensors_hooks``.

Run: ``python -m pytest benchmarks -p no:randomly --benchmark-enable --benchmark-json=benchmarks/results/cpu.json``
then ``python benchmarks/summarize.py benchmarks/results/cpu.json``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spadenorm import SPADE
from spadenorm.functional import modulated_norm
from spadenorm.reference import OriginalSPADE
from spadenorm.testing import saved_tensor_bytes

from .shapes import ADE20K_256


def original(x, gamma, beta, norm):
    normalized = F.instance_norm(x) if norm == "instance" else F.batch_norm(x, None, None, training=True)
    return normalized * (1 + gamma) + beta


def spadenorm(x, gamma, beta, norm):
    return modulated_norm(x, gamma, beta, norm=norm)


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize(("layer", "channels", "height", "width"), ADE20K_256, ids=[s[0] for s in ADE20K_256])
@pytest.mark.parametrize("impl", [original, spadenorm], ids=["original", "spadenorm"])
def test_forward_backward(benchmark, impl, layer, channels, height, width, norm):
    torch.manual_seed(0)
    shape = (1, channels, height, width)
    x, gamma, beta = (torch.randn(shape, requires_grad=True) for _ in range(3))
    dy = torch.randn(shape)

    def step():
        x.grad = gamma.grad = beta.grad = None
        impl(x, gamma, beta, norm).backward(dy)

    benchmark.group = f"{norm} {layer} {channels}x{height}x{width}"
    benchmark.extra_info.update(
        shape=list(shape),
        norm=norm,
        impl=impl.__name__,  # "original" or "spadenorm"
        saved_bytes=saved_tensor_bytes(impl, x, gamma, beta, norm),
        activation_bytes=x.numel() * x.element_size(),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    )
    benchmark(step)


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize(("layer", "channels", "height", "width"), ADE20K_256, ids=[s[0] for s in ADE20K_256])
@pytest.mark.parametrize("impl", ["original", "spadenorm"])
def test_spade_layer_forward_backward(benchmark, impl, layer, channels, height, width, norm):
    """A whole SPADE layer (three convs included) as the generator runs it: 151 label channels (ADE20K)."""
    torch.manual_seed(0)
    label_nc = 151
    reference = OriginalSPADE(norm, 3, channels, label_nc)
    module = reference if impl == "original" else SPADE(channels, label_nc, norm=norm)
    if impl == "spadenorm":
        module.load_state_dict(reference.state_dict())
    x = torch.randn(1, channels, height, width, requires_grad=True)
    seg = F.one_hot(torch.randint(0, label_nc, (1, 256, 256)), label_nc).permute(0, 3, 1, 2).float()
    dy = torch.randn_like(x)

    def step():
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x, seg).backward(dy)

    benchmark.group = f"SPADE layer {norm} {layer} {channels}x{height}x{width}"
    benchmark.extra_info.update(
        shape=[1, channels, height, width],
        norm=norm,
        impl=impl,
        saved_bytes=saved_tensor_bytes(module, x, seg),
        activation_bytes=x.numel() * x.element_size(),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    )
    benchmark(step)
