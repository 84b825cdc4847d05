"""The paper's identities: SPADE generalizes conditional BN and AdaIN; zero modulation is the plain norm."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spadenorm import SPADE, AdaIN, ConditionalBatchNorm2d
from spadenorm.functional import adain, modulated_norm


@pytest.fixture(autouse=True)
def _seeded():
    """Every test draws its data from the same seed, whatever ran before it."""
    torch.manual_seed(0)


def test_spatially_constant_spade_modulation_is_conditional_batch_norm():
    """gamma/beta maps constant over (H, W) give the per-(n, c) vector result, values and gradients."""
    x = torch.randn(4, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    g_vec = torch.randn(4, 6, 1, 1, dtype=torch.float64, requires_grad=True)
    b_vec = torch.randn(4, 6, 1, 1, dtype=torch.float64, requires_grad=True)
    g_map = g_vec.detach().expand(4, 6, 5, 7).clone().requires_grad_(True)
    b_map = b_vec.detach().expand(4, 6, 5, 7).clone().requires_grad_(True)
    dy = torch.randn(4, 6, 5, 7, dtype=torch.float64)

    y_map = modulated_norm(x, g_map, b_map, norm="batch")
    (dx_map,) = torch.autograd.grad(y_map, x, dy, retain_graph=True)
    dg_map, db_map = torch.autograd.grad(y_map, (g_map, b_map), dy)
    y_vec = modulated_norm(x, g_vec, b_vec, norm="batch")
    dx_vec, dg_vec, db_vec = torch.autograd.grad(y_vec, (x, g_vec, b_vec), dy)

    torch.testing.assert_close(y_map, y_vec)
    torch.testing.assert_close(dx_map, dx_vec)
    torch.testing.assert_close(dg_map.sum((2, 3), keepdim=True), dg_vec)
    torch.testing.assert_close(db_map.sum((2, 3), keepdim=True), db_vec)


def test_spade_module_with_spatially_constant_output_equals_conditional_batchnorm():
    """A SPADE whose gamma/beta convs ignore the map (zero weights, bias only) is a class-conditional BN."""
    torch.manual_seed(1)
    spade = SPADE(8, label_nc=3, norm="batch")
    cbn = ConditionalBatchNorm2d(8, num_classes=1)
    gamma, beta = torch.randn(8), torch.randn(8)
    with torch.no_grad():
        for conv, value in ((spade.mlp_gamma, gamma), (spade.mlp_beta, beta)):
            conv.weight.zero_()
            conv.bias.copy_(value)
        cbn.embedding.weight.copy_(torch.cat([gamma, beta])[None])
    x = torch.randn(4, 8, 6, 6)
    labels = torch.randint(0, 3, (4, 6, 6))
    for _ in range(2):  # training steps update the running statistics identically
        torch.testing.assert_close(spade(x, labels), cbn(x, torch.zeros(4, dtype=torch.long)))
    spade.eval()
    cbn.eval()
    torch.testing.assert_close(spade(x, labels), cbn(x, torch.zeros(4, dtype=torch.long)))
    torch.testing.assert_close(spade.param_free_norm.running_var, cbn.running_var)


def test_adain_is_instance_norm_modulated_by_style_statistics():
    content = torch.randn(3, 5, 9, 9, dtype=torch.float64)
    style = 4 + 3 * torch.randn(3, 5, 6, 11, dtype=torch.float64)
    mu = style.mean((2, 3), keepdim=True)
    sigma = (style.var((2, 3), keepdim=True, unbiased=False) + 1e-5).sqrt()
    torch.testing.assert_close(adain(content, style), F.instance_norm(content) * sigma + mu)


def test_adain_is_spade_with_spatially_invariant_modulation_from_another_image():
    """The paper: replace the mask by another image, make the modulation spatially invariant, N = 1."""
    content = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    style = 2 + torch.randn(1, 4, 8, 8, dtype=torch.float64)
    var, mu = torch.var_mean(style, dim=(2, 3), correction=0, keepdim=True)
    gamma_map = ((var + 1e-5).sqrt() - 1).expand_as(content)
    torch.testing.assert_close(
        AdaIN()(content, style), modulated_norm(content, gamma_map, mu.expand_as(content), norm="instance")
    )


@pytest.mark.parametrize(
    ("norm", "plain"),
    [
        ("instance", lambda x: F.instance_norm(x)),
        ("batch", lambda x: F.batch_norm(x, None, None, training=True)),
        ("group", lambda x: F.group_norm(x, 3)),
        ("layer", lambda x: F.group_norm(x, 1)),
    ],
)
def test_zero_modulation_is_the_plain_norm(norm, plain):
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    zeros = torch.zeros(2, 6, 5, 5, dtype=torch.float64)
    y = modulated_norm(x, zeros, zeros, norm=norm, num_groups=3 if norm == "group" else None)
    torch.testing.assert_close(y, plain(x))
