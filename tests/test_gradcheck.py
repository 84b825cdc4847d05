"""Float64 gradcheck of every statistics kind and modulation kind, the class-table variant, AdaIN and the modules."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from spadenorm import CLADE, SPADE, AdaIN, ConditionalBatchNorm2d
from spadenorm.functional import adain, class_modulated_norm, modulated_norm

D = torch.float64
NORMS = [("instance", None), ("batch", None), ("sync_batch", None), ("group", 2), ("layer", None), ("none", None)]
MOD_SHAPES = {"spatial": (2, 4, 3, 5), "per_sample_channel": (2, 4, 1, 1), "per_channel": (4,), "absent": None}


def _leaf(shape):
    return None if shape is None else torch.randn(shape, dtype=D, requires_grad=True)


@pytest.mark.parametrize("modulation", list(MOD_SHAPES))
@pytest.mark.parametrize(("norm", "groups"), NORMS)
def test_modulated_norm_gradcheck(norm, groups, modulation):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, 5, dtype=D, requires_grad=True)
    gamma, beta = _leaf(MOD_SHAPES[modulation]), _leaf(MOD_SHAPES[modulation])
    inputs = tuple(t for t in (x, gamma, beta) if t is not None)

    def fn(*args):
        g, b = (args[1], args[2]) if gamma is not None else (None, None)
        return modulated_norm(args[0], g, b, norm=norm, num_groups=groups)

    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("rank", [3, 5])
def test_modulated_norm_gradcheck_other_ranks(rank):
    shape = (2, 3) + (3,) * (rank - 2)
    x, gamma, beta = (torch.randn(shape, dtype=D, requires_grad=True) for _ in range(3))
    assert gradcheck(lambda *a: modulated_norm(*a, norm="instance"), (x, gamma, beta))


def test_eval_mode_gradcheck():
    x, gamma, beta = (torch.randn(3, 4, 3, 3, dtype=D, requires_grad=True) for _ in range(3))
    rm, rv = torch.randn(4, dtype=D), torch.rand(4, dtype=D) + 0.1
    assert gradcheck(
        lambda *a: modulated_norm(*a, norm="batch", running_mean=rm, running_var=rv, training=False), (x, gamma, beta)
    )


def test_class_modulated_norm_gradcheck():
    x = torch.randn(2, 3, 4, 4, dtype=D, requires_grad=True)
    labels = torch.randint(0, 5, (2, 2, 2))
    tables = (torch.randn(5, 3, dtype=D, requires_grad=True), torch.randn(5, 3, dtype=D, requires_grad=True))
    assert gradcheck(lambda x, g, b: class_modulated_norm(x, labels, g, b), (x, *tables))


def test_adain_gradcheck_flows_into_content_and_style():
    content = torch.randn(2, 3, 4, 4, dtype=D, requires_grad=True)
    style = torch.randn(2, 3, 5, 3, dtype=D, requires_grad=True)
    assert gradcheck(adain, (content, style))


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_module_gradchecks(norm):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 4, 4, dtype=D, requires_grad=True)
    spade = SPADE(4, 3, norm=norm, hidden_channels=5, dtype=D)
    seg = torch.rand(2, 3, 2, 2, dtype=D, requires_grad=True)
    assert gradcheck(lambda x, s: spade(x, s), (x, seg))
    clade = CLADE(4, 3, norm=norm, dtype=D)
    assert gradcheck(lambda x: clade(x, torch.tensor([[[0, 1], [2, 1]]] * 2)), (x,))
    cbn = ConditionalBatchNorm2d(4, cond_dim=3, dtype=D)
    torch.nn.init.normal_(cbn.projection.weight)
    assert gradcheck(lambda x, y: cbn(x, y), (x, torch.randn(2, 3, dtype=D, requires_grad=True)))
    ada = AdaIN(4, style_dim=3, dtype=D)
    assert gradcheck(lambda x, s: ada(x, s), (x, torch.randn(2, 3, dtype=D, requires_grad=True)))


def test_double_backward_raises_instead_of_returning_wrong_values():
    x = torch.randn(2, 3, 4, 4, dtype=D, requires_grad=True)
    (dx,) = torch.autograd.grad(modulated_norm(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="marked with @once_differentiable"):
        dx.sum().backward()
