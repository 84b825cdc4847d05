"""The reference GAN's losses against hand-computed values and independent formulas; VGG19 in torchvision's format."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from spade_gan.training.losses import (
    VGG19Features,
    VGGLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
    kl_divergence_loss,
)
from torch.distributions import Normal, kl_divergence

# torchvision's vgg19().features (configuration "E"): (index, in, out) of each conv, and the max-pool indices.
VGG19_CONVS = [
    (0, 3, 64),
    (2, 64, 64),
    (5, 64, 128),
    (7, 128, 128),
    (10, 128, 256),
    (12, 256, 256),
    (14, 256, 256),
    (16, 256, 256),
    (19, 256, 512),
    (21, 512, 512),
    (23, 512, 512),
    (25, 512, 512),
    (28, 512, 512),
    (30, 512, 512),
    (32, 512, 512),
    (34, 512, 512),
]
VGG19_POOLS = [4, 9, 18, 27, 36]
RELU_X_1 = [1, 6, 11, 20, 29]  # relu1_1 .. relu5_1


# ---------------------------------------------------------------------------------------------------------------------
# Hinge loss.

SCORES = torch.tensor([2.0, 0.5, -1.0])


def test_discriminator_hinge_on_hand_computed_scores():
    # real: min(D - 1, 0) = [0, -0.5, -2] -> 2.5 / 3; fake: min(-D - 1, 0) = [-3, -1.5, 0] -> 4.5 / 3.
    torch.testing.assert_close(discriminator_hinge_loss([[SCORES]], real=True), torch.tensor(2.5 / 3))
    torch.testing.assert_close(discriminator_hinge_loss([[SCORES]], real=False), torch.tensor(1.5))
    torch.testing.assert_close(discriminator_hinge_loss(SCORES, real=True), torch.tensor(2.5 / 3))


def test_hinge_uses_only_each_scales_last_output_and_averages_over_scales():
    feature = torch.full((1, 4, 2, 2), 100.0)  # intermediate features must not enter the loss
    pred = [[feature, SCORES.view(1, 1, 1, 3)], [feature, torch.full((1, 1, 2, 2), 3.0)]]
    # second scale: real 0, fake min(-4, 0) = -4 -> 4; generator -3.
    torch.testing.assert_close(discriminator_hinge_loss(pred, real=True), torch.tensor((2.5 / 3 + 0.0) / 2))
    torch.testing.assert_close(discriminator_hinge_loss(pred, real=False), torch.tensor((1.5 + 4.0) / 2))
    torch.testing.assert_close(generator_hinge_loss(pred), torch.tensor((-0.5 - 3.0) / 2))


def test_hinge_gradients_vanish_beyond_the_margin():
    d = torch.tensor([2.0, 0.5, -1.0, -2.0], requires_grad=True)
    discriminator_hinge_loss([[d]], real=True).backward()
    torch.testing.assert_close(d.grad, torch.tensor([0.0, -0.25, -0.25, -0.25]))


def test_hinge_rejects_a_non_discriminator_output():
    with pytest.raises(TypeError, match="discriminator output"):
        generator_hinge_loss([])
    with pytest.raises(TypeError, match="discriminator output"):
        discriminator_hinge_loss([[]], real=True)


# ---------------------------------------------------------------------------------------------------------------------
# Feature matching.


def test_feature_matching_on_hand_computed_features():
    def pred(a: float, b: float, c: float, score: float) -> list[list[torch.Tensor]]:
        return [
            [torch.full((2, 3, 4, 4), a), torch.full((2, 5, 2, 2), b), torch.full((2, 1, 2, 2), score)],
            [torch.full((2, 3, 2, 2), c), torch.full((2, 1, 1, 1), score)],
        ]

    fake, real = pred(1.0, -2.0, 0.5, 9.0), pred(0.0, 1.0, 0.0, -9.0)
    # |1 - 0| + |-2 - 1| + |0.5 - 0| = 4.5, the score maps excluded; times 10 / num_D = 5.
    torch.testing.assert_close(feature_matching_loss(fake, real), torch.tensor(4.5 * 5))
    torch.testing.assert_close(feature_matching_loss(fake, real, lambda_feat=2.0), torch.tensor(4.5))


def test_feature_matching_detaches_the_real_features():
    real_leaf = torch.randn(1, 2, 3, 3, requires_grad=True)
    fake_leaf = torch.randn(1, 2, 3, 3, requires_grad=True)
    score = torch.zeros(1, 1, 2, 2)
    feature_matching_loss([[fake_leaf * 1, score]], [[real_leaf * 1, score]]).backward()
    assert real_leaf.grad is None
    torch.testing.assert_close(fake_leaf.grad, 10 * torch.sign(fake_leaf - real_leaf).detach() / 18)


def test_feature_matching_rejects_mismatched_scales():
    score = torch.zeros(1)
    with pytest.raises(ValueError, match="same non-zero number of scales"):
        feature_matching_loss([[score]], [[score], [score]])


# ---------------------------------------------------------------------------------------------------------------------
# KL divergence.


def test_kl_loss_matches_torch_distributions():
    mu, logvar = torch.randn(4, 16, dtype=torch.float64), torch.randn(4, 16, dtype=torch.float64)
    std = logvar.mul(0.5).exp()
    expected = kl_divergence(Normal(mu, std), Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum()
    torch.testing.assert_close(kl_divergence_loss(mu, logvar), 0.05 * expected)
    torch.testing.assert_close(kl_divergence_loss(mu, logvar, lambda_kld=1.0), expected)


def test_kl_loss_is_a_sum_and_zero_at_the_prior():
    assert kl_divergence_loss(torch.zeros(3, 5), torch.zeros(3, 5)).abs().item() == 0
    # mu = 2, sigma = 1: 0.5 * mu^2 = 2 per element, 15 elements, times 0.05.
    torch.testing.assert_close(kl_divergence_loss(torch.full((3, 5), 2.0), torch.zeros(3, 5)), torch.tensor(1.5))


# ---------------------------------------------------------------------------------------------------------------------
# VGG19 perceptual loss.


@pytest.fixture(scope="module")
def torchvision_state() -> dict[str, torch.Tensor]:
    """A randomly initialised state dict in the format of ``torchvision.models.vgg19().state_dict()``.

    He-style scales keep activations O(1) through 13 convs; the classifier's tensors are small stand-ins (the
    loader ignores them, and the real ones hold 120M numbers).
    """
    g = torch.Generator().manual_seed(0)
    state = {}
    for index, cin, cout in VGG19_CONVS:
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        state[f"features.{index}.bias"] = 0.1 * torch.randn(cout, generator=g)
    for index in (0, 3, 6):
        state[f"classifier.{index}.weight"] = torch.randn(4, 4, generator=g)
        state[f"classifier.{index}.bias"] = torch.randn(4, generator=g)
    return state


def reference_relu_x_1(state: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """relu1_1 .. relu5_1 computed from the state dict with torchvision's layer indices, independently."""
    convs = {index for index, _, _ in VGG19_CONVS}
    outputs = []
    for i in range(RELU_X_1[-1] + 1):
        if i in convs:
            x = F.conv2d(x, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1)
        elif i in VGG19_POOLS:
            x = F.max_pool2d(x, 2, 2)
        else:
            x = F.relu(x)
        if i in RELU_X_1:
            outputs.append(x)
    return outputs


@pytest.mark.parametrize("layout", ["full", "features-only"])
def test_vgg_loads_torchvision_format_files(tmp_path, torchvision_state, layout):
    if layout == "full":
        state = torchvision_state
    else:  # vgg19().features.state_dict(): keys "0.weight", ...
        state = {k.removeprefix("features."): v for k, v in torchvision_state.items() if k.startswith("features.")}
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    vgg = VGG19Features.from_file(path)
    for index, _, _ in VGG19_CONVS[:13]:  # convs up to relu5_1
        assert torch.equal(vgg.features[index].weight, torchvision_state[f"features.{index}.weight"])
    x = torch.randn(2, 3, 32, 32)
    for ours, ref in zip(vgg(x), reference_relu_x_1(torchvision_state, x), strict=True):
        torch.testing.assert_close(ours, ref)


def test_vgg_rejects_an_incomplete_state_dict(torchvision_state):
    state = {k: v for k, v in torchvision_state.items() if k != "features.28.weight"}
    with pytest.raises(RuntimeError, match=r"28\.weight"):
        VGG19Features().load_torchvision_state_dict(state)


def test_vgg_rejects_a_foreign_state_dict():
    with pytest.raises(ValueError, match="torchvision's vgg19"):
        VGG19Features().load_torchvision_state_dict({"conv1.weight": torch.zeros(1)})


def test_vgg_is_frozen_and_stays_in_eval_mode():
    vgg = VGG19Features()
    vgg.train()
    assert not vgg.training
    assert not any(p.requires_grad for p in vgg.parameters())


def test_vgg_loss_weights_relu_x_1_distances(tmp_path, torchvision_state):
    path = tmp_path / "vgg19.pth"
    torch.save(torchvision_state, path)
    loss = VGGLoss.from_file(path)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    fx, fy = reference_relu_x_1(torchvision_state, x), reference_relu_x_1(torchvision_state, y)
    weights = [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0]
    expected = 10 * sum(w * (a - b).abs().mean() for w, a, b in zip(weights, fx, fy, strict=True))
    torch.testing.assert_close(loss(x, y), expected)
    torch.testing.assert_close(VGGLoss.from_file(path, lambda_vgg=1.0)(x, y), expected / 10)


def test_vgg_loss_is_zero_for_identical_images_and_positive_otherwise():
    torch.manual_seed(0)
    loss = VGGLoss()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(x, x.clone()).item() == 0
    assert loss(x, x.flip(-1)).item() > 0
    assert loss(x, (x + 0.05).clamp(-1, 1)).item() > 0


def test_vgg_loss_gradient_reaches_the_generated_image_only():
    loss = VGGLoss()
    x = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_()
    y = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_()
    loss(x, y).backward()
    assert x.grad is not None
    assert x.grad.abs().sum() > 0
    assert y.grad is None
    assert all(p.grad is None for p in loss.parameters())


def test_vgg_loss_rejects_mismatched_images():
    with pytest.raises(ValueError, match="same shape"):
        VGGLoss()(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 16, 16))
