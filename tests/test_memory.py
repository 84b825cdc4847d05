"""Bytes saved for backward: x, spatial gamma and O(N*C) statistics, against 3 x numel(x) for the original."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spadenorm.functional import modulated_norm
from spadenorm.testing import saved_tensor_bytes


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_instance_norm_spade_saves_at_most_two_activations(dtype):
    n, c, h, w = 2, 16, 32, 32
    x, gamma, beta = (torch.randn(n, c, h, w, dtype=dtype, requires_grad=True) for _ in range(3))
    activation = x.numel() * x.element_size()
    ours = saved_tensor_bytes(lambda x, g, b: modulated_norm(x, g, b, norm="instance"), x, gamma, beta)
    original = saved_tensor_bytes(lambda x, g, b: F.instance_norm(x) * (1 + g) + b, x, gamma, beta)
    stats = 2 * n * c * 4  # fp32 mean and rstd
    assert ours <= 2 * activation + stats
    assert original >= 3 * activation
    assert ours < original


def test_per_channel_modulation_saves_only_x_and_statistics():
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    gamma = torch.randn(4, 8, 1, 1, requires_grad=True)
    ours = saved_tensor_bytes(lambda x, g: modulated_norm(x, g, g, norm="batch"), x, gamma)
    assert ours <= x.numel() * 4 + gamma.numel() * 4 + 2 * 8 * 4


def test_second_modulation_keeps_beta_only_when_scale_needs_a_gradient():
    """The timestep scale/shift adds no activation-sized saved tensor, except beta when d scale is needed
    (d scale = sum dy * (x_hat * (1 + gamma) + beta)); the eager formula keeps four activations."""
    n, c, h, w = 2, 16, 32, 32
    x, gamma, beta = (torch.randn(n, c, h, w, requires_grad=True) for _ in range(3))
    shift = torch.randn(n, c, requires_grad=True)
    activation = x.numel() * x.element_size()
    small = 4 * n * c * 4  # statistics, scale

    def ours(scale):
        return saved_tensor_bytes(
            lambda x, g, b: modulated_norm(x, g, b, norm="group", num_groups=4, scale=scale, shift=shift),
            x, gamma, beta,
        )  # fmt: skip

    def eager(x, g, b):
        s = scale_grad[:, :, None, None]
        return (F.group_norm(x, 4) * (1 + g) + b) * (1 + s) + shift[:, :, None, None]

    scale_grad = torch.randn(n, c, requires_grad=True)
    assert ours(torch.randn(n, c)) <= 2 * activation + small
    assert ours(scale_grad) <= 3 * activation + small
    assert saved_tensor_bytes(eager, x, gamma, beta) >= 4 * activation
