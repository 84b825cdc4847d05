"""Other implementations' formulas, restated in plain torch, against the spadenorm call that computes the same thing.

Each reference function is written from the published formula of one implementation (see the docs' migration page),
not from its code; float64 throughout, so agreement is to rounding.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spadenorm import SPADE, AdaIN, ConditionalBatchNorm2d
from spadenorm.functional import adain, class_modulated_norm, modulated_norm

D = torch.float64


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _var_mean(t: torch.Tensor, dims: tuple[int, ...], unbiased: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.var_mean(t, dim=dims, correction=int(unbiased), keepdim=True)


def test_monai_spade():
    """MONAI: a = LeakyReLU_0.01(conv(m)), gamma = IN(conv_g(a)), beta = IN(conv_b(a)), y = IN(x)(1 + gamma) + beta,
    64 hidden channels, the float segmap resized with nearest."""
    x, seg = torch.randn(2, 8, 6, 6, dtype=D), torch.rand(2, 3, 12, 12, dtype=D)
    conv, conv_g, conv_b = (torch.nn.Conv2d(i, o, 3, padding=1).double() for i, o in ((3, 64), (64, 8), (64, 8)))
    a = F.leaky_relu(conv(F.interpolate(seg, size=(6, 6), mode="nearest")), 0.01)
    gamma, beta = F.instance_norm(conv_g(a)), F.instance_norm(conv_b(a))
    theirs = F.instance_norm(x) * (1 + gamma) + beta
    torch.testing.assert_close(modulated_norm(x, gamma, beta, norm="instance"), theirs)
    # Without the instance norms on gamma and beta, MONAI's block is SPADE with its width and activation.
    ours = SPADE(8, 3, hidden_channels=64, activation="leaky_relu").double()
    ours.mlp_shared[0].load_state_dict(conv.state_dict())
    ours.mlp_gamma.load_state_dict(conv_g.state_dict())
    ours.mlp_beta.load_state_dict(conv_b.state_dict())
    torch.testing.assert_close(ours(x, seg), F.instance_norm(x) * (1 + conv_g(a)) + conv_b(a))


def test_monai_batch_affine_folds_into_gamma_and_beta():
    """MONAI's affine BATCH inner norm: (x_hat w + b)(1 + gamma) + beta = x_hat (1 + gamma') + beta' with
    gamma' = w gamma + w - 1, beta' = b gamma + b + beta; norm_affine=True keeps w and b as parameters."""
    x = torch.randn(4, 8, 5, 5, dtype=D)
    w, b = torch.randn(8, 1, 1, dtype=D), torch.randn(8, 1, 1, dtype=D)
    gamma, beta = torch.randn(4, 8, 5, 5, dtype=D), torch.randn(4, 8, 5, 5, dtype=D)
    theirs = (F.batch_norm(x, None, None, training=True) * w + b) * (1 + gamma) + beta
    folded = modulated_norm(x, w * gamma + w - 1, b * gamma + b + beta, norm="batch")
    torch.testing.assert_close(folded, theirs)


def test_clade():
    """CLADE: y = x_hat W[l] + B[l], the scale used directly; labels are the argmax of the nearest-resized one-hot."""
    x = torch.randn(2, 8, 6, 6, dtype=D)
    one_hot = F.one_hot(torch.randint(0, 5, (2, 3, 3)), 5).movedim(-1, 1).to(D)
    table_w, table_b = torch.rand(5, 8, dtype=D), torch.randn(5, 8, dtype=D)  # W ~ U(0, 1) as CLADE initialises
    labels = F.interpolate(one_hot, size=(6, 6), mode="nearest").argmax(1)
    theirs = F.instance_norm(x) * table_w[labels].movedim(-1, 1) + table_b[labels].movedim(-1, 1)
    torch.testing.assert_close(class_modulated_norm(x, labels, table_w, table_b), theirs)


def test_imaginaire_spatially_adaptive_norm_fused_conv_and_maps_in_sequence():
    """imaginaire: one conv of 2C outputs (first half gamma); several conditions modulate in sequence,
    ((x_hat (1 + g1) + b1)(1 + g2) + b2), which is one modulation with gamma' = (1 + g1)(1 + g2) - 1 and
    beta' = b1 (1 + g2) + b2."""
    x, actv = torch.randn(2, 8, 6, 6, dtype=D), torch.randn(2, 16, 6, 6, dtype=D)
    fused = torch.nn.Conv2d(16, 16, 3, padding=1).double()
    gamma, beta = fused(actv).chunk(2, dim=1)
    theirs = F.instance_norm(x) * (1 + gamma) + beta
    torch.testing.assert_close(modulated_norm(x, gamma, beta), theirs)
    g2, b2 = torch.randn(2, 8, 6, 6, dtype=D), torch.randn(2, 8, 6, 6, dtype=D)
    in_sequence = (F.instance_norm(x) * (1 + gamma) + beta) * (1 + g2) + b2
    torch.testing.assert_close(modulated_norm(x, (1 + gamma) * (1 + g2) - 1, beta * (1 + g2) + b2), in_sequence)


def test_imaginaire_layer_norm_2d_puts_eps_on_the_unbiased_std():
    """imaginaire's LayerNorm2d: (x - mu) / (std_unbiased + eps) per sample; spadenorm's "layer" with eps 0 and a
    per-sample gamma = std_biased / (std_unbiased + eps) - 1 gives it exactly."""
    x, eps = torch.randn(3, 4, 5, 5, dtype=D), 1e-5
    var_u, mu = _var_mean(x, (1, 2, 3), unbiased=True)
    theirs = (x - mu) / (var_u.sqrt() + eps)
    var_b, _ = _var_mean(x, (1, 2, 3))
    gamma = var_b.sqrt() / (var_u.sqrt() + eps) - 1  # (N, 1, 1, 1)
    torch.testing.assert_close(modulated_norm(x, gamma, norm="layer", eps=0.0), theirs)


def test_imaginaire_adaptive_norm_is_adain_with_a_style_vector():
    """imaginaire's AdaptiveNorm: x_hat (1 + gamma) + beta with (gamma, beta) = fc(z); fc maps to AdaIN.projection."""
    x, z = torch.randn(2, 8, 5, 5, dtype=D), torch.randn(2, 6, dtype=D)
    layer = AdaIN(8, style_dim=6).double()
    torch.nn.init.normal_(layer.projection.bias)
    gamma, beta = layer.projection(z).chunk(2, dim=1)
    theirs = F.instance_norm(x) * (1 + gamma[..., None, None]) + beta[..., None, None]
    torch.testing.assert_close(layer(x, z), theirs)


def test_sdm_spade_group_norm_with_the_timestep_modulation():
    """SDM: GroupNorm(32, affine=False) then x_hat (1 + gamma) + beta, then the timestep's (1 + scale) and shift per
    (n, c): one SPADE call with scale and shift."""
    x, seg = torch.randn(2, 64, 8, 8, dtype=D), torch.rand(2, 5, 8, 8, dtype=D)
    scale, shift = torch.randn(2, 64, dtype=D), torch.randn(2, 64, dtype=D)
    layer = SPADE(64, 5, norm="group", num_groups=32, hidden_channels=16).double()
    actv = layer.mlp_shared(seg)
    out_norm = F.group_norm(x, 32) * (1 + layer.mlp_gamma(actv)) + layer.mlp_beta(actv)
    theirs = out_norm * (1 + scale[..., None, None]) + shift[..., None, None]
    torch.testing.assert_close(layer(x, seg, scale=scale, shift=shift), theirs)


def test_pytorch_adain_uses_unbiased_variances():
    """naoto0804's AdaIN: sigma = sqrt(Var_unbiased + eps) for content and style. With M_c content elements per
    channel that is spadenorm's instance norm at eps (M_c - 1) / M_c, scaled by sqrt((M_c - 1) / M_c)."""
    content, style, eps = torch.randn(2, 4, 8, 8, dtype=D), 3 + 2 * torch.randn(2, 4, 5, 7, dtype=D), 1e-5
    var_c, mu_c = _var_mean(content, (2, 3), unbiased=True)
    var_s, mu_s = _var_mean(style, (2, 3), unbiased=True)
    theirs = (var_s + eps).sqrt() * (content - mu_c) / (var_c + eps).sqrt() + mu_s
    m_c = 64
    gamma = (var_s + eps).sqrt() * ((m_c - 1) / m_c) ** 0.5 - 1
    torch.testing.assert_close(modulated_norm(content, gamma, mu_s, eps=eps * (m_c - 1) / m_c), theirs)
    # Same sizes: exactly adain with the scaled eps.
    style_same = 3 + 2 * torch.randn(2, 4, 8, 8, dtype=D)
    var_s, mu_s = _var_mean(style_same, (2, 3), unbiased=True)
    theirs = (var_s + eps).sqrt() * (content - mu_c) / (var_c + eps).sqrt() + mu_s
    torch.testing.assert_close(adain(content, style_same, eps=eps * (m_c - 1) / m_c), theirs)


def test_original_lua_adain_has_no_eps_on_the_style():
    """The original AdaIN: sigma_s = sqrt(Var_biased), sigma_c = sqrt(Var_biased + eps)."""
    content, style, eps = torch.randn(1, 3, 6, 6, dtype=D), torch.randn(1, 3, 4, 4, dtype=D), 1e-5
    var_c, mu_c = _var_mean(content, (2, 3))
    var_s, mu_s = _var_mean(style, (2, 3))
    theirs = var_s.sqrt() * (content - mu_c) / (var_c + eps).sqrt() + mu_s
    torch.testing.assert_close(modulated_norm(content, var_s.sqrt() - 1, mu_s, eps=eps), theirs)


def test_sngan_conditional_batch_norm_scales_by_w_not_one_plus_gamma():
    """SNGAN: y = W[c] BN(x) + B[c], W initialised to ones; spadenorm's embedding rows are (W - 1, B)."""
    x, classes = torch.randn(4, 6, 5, 5, dtype=D), torch.tensor([0, 2, 2, 1])
    table_w, table_b = 1 + 0.1 * torch.randn(3, 6, dtype=D), torch.randn(3, 6, dtype=D)
    theirs = table_w[classes][..., None, None] * F.batch_norm(x, None, None, training=True)
    theirs = theirs + table_b[classes][..., None, None]
    layer = ConditionalBatchNorm2d(6, num_classes=3, dtype=D)
    with torch.no_grad():
        layer.embedding.weight.copy_(torch.cat([table_w - 1, table_b], dim=1))
    torch.testing.assert_close(layer(x, classes), theirs)


def test_biggan_ccbn_and_its_biased_running_variance():
    """BigGAN ccbn: BN(x)(1 + G(y)) + Bias(y) with bias-free linear maps; its myBN stores the biased batch variance,
    spadenorm (as torch) the unbiased one: ours = theirs * M / (M - 1) after one step with momentum 1."""
    x, y = torch.randn(4, 6, 5, 5, dtype=D), torch.randn(4, 3, dtype=D)
    layer = ConditionalBatchNorm2d(6, cond_dim=3, momentum=1.0, dtype=D)
    with torch.no_grad():
        layer.projection.weight.normal_()
    weight = layer.projection.weight
    gain, bias = (y @ weight[:6].T)[..., None, None], (y @ weight[6:].T)[..., None, None]
    theirs = F.batch_norm(x, None, None, training=True) * (1 + gain) + bias
    torch.testing.assert_close(layer(x, y), theirs)
    var_biased, _ = _var_mean(x, (0, 2, 3))
    m = 4 * 5 * 5
    torch.testing.assert_close(layer.running_var, var_biased.flatten() * m / (m - 1))
