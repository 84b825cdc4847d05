"""torch.compile(fullgraph=True) of every module, forward and backward, on both backends.

``aot_eager`` runs in the default suite (it traces through dynamo and AOTAutograd, where graph breaks and tracing
errors show up); ``inductor`` (code generation) is marked slow and runs in CI's slow pass. Without a GPU the
``"triton"`` backend runs its kernels on CPU tensors through the interpreter. The compiled module is compared with
the eager module on the ``"torch"`` backend: outputs, gradients of x and of every parameter, and buffers.
"""

from __future__ import annotations

import copy

import pytest
import torch

import spadenorm
from spadenorm import CLADE, SPADE, AdaIN, ConditionalBatchNorm2d, ParamFreeNorm
from spadenorm.functional import modulated_norm


def _backends():
    try:
        import triton  # noqa: F401
    except ImportError:
        return ["torch"]
    return ["torch", "triton"]


class _WithEdges(torch.nn.Module):
    """SPADE called with class ids and an edge channel (a keyword argument): ``layer(x, ids, extra=edges)``."""

    def __init__(self, layer: SPADE) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x, ids, edges):
        return self.layer(x, ids, extra=edges)


def _cases():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    labels = torch.randint(0, 5, (2, 12, 12))
    return [
        ("spade-instance-labels", SPADE(8, 5, hidden_channels=16), (x, labels)),
        ("spade-batch-onehot", SPADE(8, 5, norm="batch", hidden_channels=16), (x, torch.rand(2, 5, 3, 3))),
        # the first convolution by table lookups, its activation in place on the lookup's result
        ("spade-labels-lookup", SPADE(8, 5, hidden_channels=16, label_lookup=True), (x, labels)),
        (  # the first convolution by table lookups, with an edge channel after the classes
            "spade-labels-edges",
            _WithEdges(SPADE(8, 6, hidden_channels=16, label_lookup=True)),
            (x, labels, (torch.rand(2, 1, 12, 12) > 0.5).float()),
        ),
        ("spade-sync_batch", SPADE(8, 5, norm="sync_batch", hidden_channels=16), (x, labels)),
        ("spade-group", SPADE(8, 5, norm="group", num_groups=4, hidden_channels=16), (x, labels)),
        (  # the timestep modulation of a diffusion block; scale needs a gradient (beta is kept for backward)
            "spade-group-scale-shift",
            SPADE(8, 5, norm="group", num_groups=4, hidden_channels=16),
            (x, labels, torch.randn(2, 8, requires_grad=True), torch.randn(2, 8)),
        ),
        ("clade", CLADE(8, 5), (x, labels)),
        ("param-free-batch", ParamFreeNorm(8, "batch", momentum=None), (x,)),
        ("cbn-classes", ConditionalBatchNorm2d(8, num_classes=3), (x, torch.tensor([0, 2]))),
        ("cbn-vectors", ConditionalBatchNorm2d(8, cond_dim=4), (x, torch.randn(2, 4))),
        ("adain-map", AdaIN(), (x, torch.randn(2, 8, 3, 3))),
        ("adain-vector", AdaIN(8, style_dim=4), (x, torch.randn(2, 4))),
    ]


def _check_compiled(module, args, backend, spadenorm_backend):
    eager = module
    eager.zero_grad(set_to_none=True)  # the module objects are shared by the parametrized cases
    compiled_module = copy.deepcopy(module)
    compiled_fn = torch.compile(compiled_module, fullgraph=True, backend=backend)

    def compiled(*inputs):
        with spadenorm.use_backend(spadenorm_backend):
            return compiled_fn(*inputs)

    x = args[0].clone().requires_grad_(True)
    x_c = args[0].clone().requires_grad_(True)
    for mode in ("train", "eval"):
        eager.train(mode == "train")
        compiled_module.train(mode == "train")
        y = eager(x, *args[1:])
        y_c = compiled(x_c, *args[1:])
        torch.testing.assert_close(y_c, y, atol=1e-5, rtol=1e-5)
        y.square().sum().backward()
        y_c.square().sum().backward()
        torch.testing.assert_close(x_c.grad, x.grad, atol=1e-4, rtol=1e-4)
        for (name, p), p_c in zip(eager.named_parameters(), compiled_module.parameters(), strict=True):
            torch.testing.assert_close(p_c.grad, p.grad, atol=1e-4, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
    for (name, b), b_c in zip(eager.named_buffers(), compiled_module.buffers(), strict=True):
        torch.testing.assert_close(b_c, b, msg=lambda m, n=name: f"buffer {n}: {m}")


@pytest.mark.parametrize("spadenorm_backend", _backends())
@pytest.mark.parametrize(("name", "module", "args"), _cases(), ids=[c[0] for c in _cases()])
def test_compile_aot_eager(name, module, args, spadenorm_backend):
    torch._dynamo.reset()
    with spadenorm.use_backend("torch"):
        _check_compiled(module, args, "aot_eager", spadenorm_backend)


@pytest.mark.slow
@pytest.mark.parametrize("spadenorm_backend", _backends())
@pytest.mark.parametrize(("name", "module", "args"), _cases(), ids=[c[0] for c in _cases()])
def test_compile_inductor(name, module, args, spadenorm_backend):
    torch._dynamo.reset()
    with spadenorm.use_backend("torch"):
        _check_compiled(module, args, "inductor", spadenorm_backend)


def test_compiled_functional_keeps_channels_last():
    fn = torch.compile(
        lambda x, g: modulated_norm(x, g, g, norm="group", num_groups=2), fullgraph=True, backend="aot_eager"
    )
    x = torch.randn(2, 4, 5, 5).to(memory_format=torch.channels_last)
    g = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(fn(x, g), modulated_norm(x, g, g, norm="group", num_groups=2))


def test_compiled_functional_is_not_recompiled_by_eager_calls_or_the_environment(monkeypatch):
    """What an eager call remembers (resolved specs) and unrelated environment variables are not part of a compiled
    function's guards: the same inputs run the first compilation again."""
    compilations = []

    def counting(gm, example_inputs):
        compilations.append(gm)
        return gm.forward

    fn = torch.compile(lambda x, g: modulated_norm(x, g, g, norm="group", num_groups=2), backend=counting)
    x, g = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    fn(x, g)
    fn(x, g)
    modulated_norm(x, g, g, norm="group", num_groups=4, eps=1e-3)  # an eager call with a spec not seen before
    monkeypatch.setenv("SPADENORM_UNRELATED_VARIABLE", "1")
    fn(x, g)
    assert len(compilations) == 1
