"""The modules: original-SPADE checkpoint compatibility, segmap forms, CLADE, conditional BN, AdaIN, factory kwargs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spadenorm
from spadenorm import CLADE, SPADE, AdaIN, ConditionalBatchNorm2d, ParamFreeNorm
from spadenorm.functional import resize_labels
from spadenorm.reference import OriginalSPADE, class_modulated_norm_reference, modulated_norm_reference


@pytest.mark.parametrize("config", ["spadeinstance3x3", "spadebatch3x3", "spadesyncbatch3x3", "spadeinstance5x5"])
def test_original_state_dict_loads_strictly_and_matches_in_train_and_eval(config):
    torch.manual_seed(0)
    norm = config[len("spade") : -3].replace("syncbatch", "batch")
    original = OriginalSPADE(norm, int(config[-1]), norm_nc=6, label_nc=4)
    ours = SPADE.from_config(config, 6, 4)
    ours.load_state_dict(original.state_dict(), strict=True)
    assert set(ours.state_dict()) == set(original.state_dict())
    x = torch.randn(2, 6, 8, 8)
    seg = F.one_hot(torch.randint(0, 4, (2, 16, 16)), 4).permute(0, 3, 1, 2).float()
    for _ in range(2):
        torch.testing.assert_close(ours(x, seg), original(x, seg), atol=2e-5, rtol=1e-5)
    ours.eval()
    original.eval()
    torch.testing.assert_close(ours(x, seg), original(x, seg), atol=2e-5, rtol=1e-5)
    # ... and ours saves a state dict the original loads.
    OriginalSPADE(norm, int(config[-1]), 6, 4).load_state_dict(ours.state_dict(), strict=True)


def test_integer_labels_equal_their_one_hot_map():
    torch.manual_seed(0)
    layer = SPADE(5, label_nc=7)
    x = torch.randn(2, 5, 8, 8)
    labels = torch.randint(0, 7, (2, 1, 32, 32))
    one_hot = F.one_hot(labels[:, 0], 7).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(layer(x, labels), layer(x, one_hot))
    torch.testing.assert_close(layer(x, labels[:, 0]), layer(x, one_hot))
    bilinear = SPADE(5, label_nc=7, interpolation="bilinear")
    bilinear.load_state_dict(layer.state_dict())
    torch.testing.assert_close(bilinear(x, labels), bilinear(x, one_hot))


def test_spade_keeps_channels_last_and_matches_contiguous():
    torch.manual_seed(0)
    layer = SPADE(8, label_nc=3, norm="batch").to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 6, 6)
    labels = torch.randint(0, 3, (2, 6, 6))
    y_cl = layer(x.to(memory_format=torch.channels_last), labels)
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
    layer.param_free_norm.reset_running_stats()
    torch.testing.assert_close(y_cl, layer(x, labels), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", ["instance", "batch", "group", "layer"])
def test_spade_matches_reference_for_every_norm(norm):
    torch.manual_seed(0)
    groups = 2 if norm == "group" else None
    layer = SPADE(4, 3, norm=norm, num_groups=groups, hidden_channels=16).double()
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    seg = torch.rand(3, 3, 5, 5, dtype=torch.float64)
    actv = layer.mlp_shared(seg)
    expected = modulated_norm_reference(x, layer.mlp_gamma(actv), layer.mlp_beta(actv), norm=norm, num_groups=groups)
    torch.testing.assert_close(layer(x, seg), expected)


def test_clade_matches_one_hot_reference_and_trains_its_tables():
    torch.manual_seed(0)
    layer = CLADE(4, num_classes=6)
    with torch.no_grad():
        layer.gamma_table.normal_()
        layer.beta_table.normal_()
    x = torch.randn(2, 4, 8, 8)
    labels = torch.randint(0, 6, (2, 4, 4))
    y = layer(x, labels)
    expected = class_modulated_norm_reference(x, resize_labels(labels, (8, 8)), layer.gamma_table, layer.beta_table)
    torch.testing.assert_close(y, expected.float(), atol=1e-5, rtol=1e-5)
    y.square().sum().backward()
    present = torch.zeros(6, dtype=torch.bool)
    present[labels.unique()] = True
    assert (layer.gamma_table.grad.abs().sum(1) > 0).eq(present).all()  # only classes in the map get gradients


def test_fresh_clade_and_conditional_bn_are_identity_modulations():
    x = torch.randn(3, 4, 5, 5)
    torch.testing.assert_close(CLADE(4, 2)(x, torch.zeros(3, 5, 5, dtype=torch.long)), F.instance_norm(x))
    torch.testing.assert_close(
        ConditionalBatchNorm2d(4, num_classes=3)(x, torch.tensor([0, 1, 2])), F.batch_norm(x, None, None, training=True)
    )


def test_conditional_batchnorm_uses_per_class_rows():
    torch.manual_seed(0)
    layer = ConditionalBatchNorm2d(3, num_classes=4)
    nn.init.normal_(layer.embedding.weight)
    x, y = torch.randn(5, 3, 4, 4), torch.tensor([0, 3, 3, 1, 2])
    gamma, beta = layer.embedding.weight[y].chunk(2, dim=1)
    expected = F.batch_norm(x, None, None, training=True) * (1 + gamma[..., None, None]) + beta[..., None, None]
    torch.testing.assert_close(layer(x, y), expected)


def test_adain_style_vector_path():
    torch.manual_seed(0)
    layer = AdaIN(4, style_dim=6)
    x, w = torch.randn(2, 4, 5, 5), torch.randn(2, 6)
    gamma, beta = layer.projection(w).chunk(2, dim=1)
    expected = F.instance_norm(x) * (1 + gamma[..., None, None]) + beta[..., None, None]
    torch.testing.assert_close(layer(x, w), expected)


def test_factory_kwargs_and_repr():
    layer = SPADE(4, 3, norm="batch", dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in layer.parameters())
    assert layer.param_free_norm.running_mean.dtype == torch.float64
    assert "4, label_nc=3, interpolation='nearest'" in repr(layer)
    assert "ParamFreeNorm(4, norm='batch', eps=1e-05, momentum=0.1)" in repr(layer)
    assert "num_classes=5" in repr(CLADE(4, 5))
    assert "cond_dim=7" in repr(ConditionalBatchNorm2d(4, cond_dim=7))
    assert "style_dim=3" in repr(AdaIN(4, 3))
    assert ParamFreeNorm(4, "instance").state_dict() == {}


def test_reset_parameters_restores_identity():
    layer = CLADE(4, 3, norm="batch")
    layer(torch.randn(2, 4, 5, 5) + 3, torch.zeros(2, 5, 5, dtype=torch.long))
    with torch.no_grad():
        layer.gamma_table.add_(1)
    layer.reset_parameters()
    assert torch.equal(layer.gamma_table, torch.ones(3, 4))
    assert torch.equal(layer.param_free_norm.running_mean, torch.zeros(4))
    assert int(layer.param_free_norm.num_batches_tracked) == 0


def test_spade_and_clade_take_the_timestep_scale_and_shift():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    scale, shift = torch.randn(2, 8, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    spade = SPADE(8, 3, norm="group", num_groups=4, hidden_channels=8).double()
    seg = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    actv = spade.mlp_shared(seg)
    gamma, beta = spade.mlp_gamma(actv), spade.mlp_beta(actv)
    expected = (F.group_norm(x, 4) * (1 + gamma) + beta) * (1 + scale[..., None, None]) + shift[..., None, None]
    torch.testing.assert_close(spade(x, seg, scale=scale, shift=shift), expected)
    clade = CLADE(8, 3).double()
    with torch.no_grad():
        clade.gamma_table.normal_()
    labels = torch.randint(0, 3, (2, 6, 6))
    table_gamma = clade.gamma_table[labels].movedim(-1, 1)
    expected = (F.instance_norm(x) * table_gamma) * (1 + scale[..., None, None]) + shift[..., None, None]
    torch.testing.assert_close(clade(x, labels, scale, shift), expected)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_spade_in_every_spatial_rank_matches_the_reference(spatial_dims):
    torch.manual_seed(0)
    sizes = (6, 5, 4)[:spatial_dims]
    layer = SPADE(4, 3, spatial_dims=spatial_dims, hidden_channels=8).double()
    x = torch.randn(2, 4, *sizes, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, *(2 * s for s in sizes)))  # resized to x with nearest
    one_hot = F.one_hot(resize_labels(labels, sizes), 3).movedim(-1, 1).double()
    actv = layer.mlp_shared(one_hot)
    expected = modulated_norm_reference(x, layer.mlp_gamma(actv), layer.mlp_beta(actv))
    torch.testing.assert_close(layer(x, labels), expected)
    torch.testing.assert_close(layer(x, labels[:, None]), expected)


def test_soft_segmaps_are_resized_with_the_chosen_interpolation():
    """brainSPADE-style partial-volume maps (probabilities summing to 1) through trilinear resizing."""
    torch.manual_seed(0)
    layer = SPADE(4, 3, spatial_dims=3, hidden_channels=8, interpolation="trilinear").double()
    x = torch.randn(1, 4, 4, 6, 6, dtype=torch.float64)
    soft = torch.softmax(torch.randn(1, 3, 2, 3, 3, dtype=torch.float64), dim=1)
    resized = F.interpolate(soft, size=(4, 6, 6), mode="trilinear")
    actv = layer.mlp_shared(resized)
    expected = modulated_norm_reference(x, layer.mlp_gamma(actv), layer.mlp_beta(actv))
    torch.testing.assert_close(layer(x, soft), expected)
    with pytest.raises(TypeError, match=r"a one-hot or soft segmap must be floating point, got torch\.uint8"):
        layer(x, (soft > 0.5).to(torch.uint8))


def test_spade_variants_no_hidden_layer_leaky_relu_and_norm_affine():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    seg = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    direct = SPADE(8, 3, hidden_channels=0).double()  # vid2vid's num_filters: 0
    assert direct.mlp_shared is None
    assert direct.mlp_gamma.in_channels == 3
    expected = modulated_norm_reference(x, direct.mlp_gamma(seg), direct.mlp_beta(seg))
    torch.testing.assert_close(direct(x, seg), expected)

    leaky = SPADE(8, 3, hidden_channels=16, activation="leaky_relu").double()
    actv = F.leaky_relu(leaky.mlp_shared[0](seg), 0.01)
    expected = modulated_norm_reference(x, leaky.mlp_gamma(actv), leaky.mlp_beta(actv))
    torch.testing.assert_close(leaky(x, seg), expected)

    # MONAI's SPADE latent diffusion: GroupNorm(32 groups, eps 1e-6, affine) inside, then the modulation.
    affine = SPADE(64, 3, hidden_channels=16, norm="group", num_groups=32, eps=1e-6, norm_affine=True).double()
    assert {"param_free_norm.weight", "param_free_norm.bias"} <= set(affine.state_dict())
    with torch.no_grad():
        affine.param_free_norm.weight.normal_()
        affine.param_free_norm.bias.normal_()
    x = torch.randn(2, 64, 6, 6, dtype=torch.float64, requires_grad=True)
    actv = affine.mlp_shared(seg)
    inner = F.group_norm(x, 32, affine.param_free_norm.weight, affine.param_free_norm.bias, eps=1e-6)
    expected = inner * (1 + affine.mlp_gamma(actv)) + affine.mlp_beta(actv)
    y = affine(x, seg)
    torch.testing.assert_close(y, expected)
    grads = torch.autograd.grad(y.square().sum(), (x, affine.param_free_norm.weight, affine.param_free_norm.bias))
    ref = torch.autograd.grad(expected.square().sum(), (x, affine.param_free_norm.weight, affine.param_free_norm.bias))
    for g, r in zip(grads, ref, strict=True):
        torch.testing.assert_close(g, r)


def test_default_spade_still_loads_original_keys_and_norm_affine_param_free_norm_alone():
    assert set(SPADE(4, 3).state_dict()) == {
        "mlp_shared.0.weight", "mlp_shared.0.bias", "mlp_gamma.weight", "mlp_gamma.bias", "mlp_beta.weight",
        "mlp_beta.bias",
    }  # fmt: skip
    norm = ParamFreeNorm(6, "group", num_groups=3, affine=True).double()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(norm(x), F.group_norm(x, 3, norm.weight, norm.bias))
    assert "affine=True" in repr(norm)


@pytest.mark.parametrize("rank", [3, 4, 5])
def test_conditional_batchnorm_in_every_rank_tracks_like_torch(rank):
    torch.manual_seed(0)
    ours = spadenorm.ConditionalBatchNorm(4, num_classes=3)
    theirs = {3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[rank](4, affine=False)
    y = torch.tensor([0, 2, 1])
    for _ in range(2):
        x = 1 + 2 * torch.randn(3, 4, *(5, 4, 3)[: rank - 2])
        torch.testing.assert_close(ours(x, y), theirs(x))
    torch.testing.assert_close(ours.running_var, theirs.running_var)
