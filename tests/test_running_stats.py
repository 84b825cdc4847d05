"""Running statistics follow torch.nn.BatchNorm2d exactly, step by step, including momentum=None."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spadenorm import ConditionalBatchNorm2d, ParamFreeNorm
from spadenorm.functional import modulated_norm


@pytest.mark.parametrize("momentum", [0.1, None, 0.0, 1.0])
@pytest.mark.parametrize("norm", ["batch", "sync_batch"])
def test_param_free_norm_tracks_like_batchnorm2d(norm, momentum):
    torch.manual_seed(0)
    ours = ParamFreeNorm(5, norm, momentum=momentum)
    theirs = torch.nn.BatchNorm2d(5, affine=False, momentum=momentum)
    for step in range(4):
        x = torch.randn(3, 5, 4, 6) * (step + 1) + step
        torch.testing.assert_close(ours(x), theirs(x))
        torch.testing.assert_close(ours.running_mean, theirs.running_mean, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(ours.running_var, theirs.running_var, rtol=1e-6, atol=1e-7)
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == step + 1
    ours.eval()
    theirs.eval()
    x = torch.randn(2, 5, 3, 3)
    torch.testing.assert_close(ours(x), theirs(x))
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())


LAYOUTS = {  # the torch backend's three ways to batch statistics
    "one sample (group-norm rows)": ((1, 6, 9, 7), torch.contiguous_format),
    "merged rows": ((2, 8, 128, 128), torch.contiguous_format),  # N > 1, 256K elements, long rows
    "batch-norm kernel, channels_last": ((2, 8, 128, 128), torch.channels_last),
    "batch-norm kernel, short rows": ((3, 6, 64, 64), torch.contiguous_format),
}


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_batch_statistics_of_every_layout_track_like_float64_batchnorm(layout, momentum):
    """Output, gradient and running estimates against torch's batch norm in float64, on inputs whose mean is far from
    zero (uncentred moments would lose their digits), each way the torch backend takes the statistics. The output's
    bound is 2e-4 or twice the error of torch's own float32 batch norm on the same input, whichever is larger
    (torch's channels_last kernel loses a few digits at 256K elements)."""
    torch.manual_seed(0)
    shape, memory_format = LAYOUTS[layout]
    ours = ParamFreeNorm(shape[1], "batch", momentum=momentum)
    theirs = torch.nn.BatchNorm2d(shape[1], affine=False, momentum=momentum).double()
    for step in range(3):
        x = (torch.randn(shape) * (step + 1) + 100).contiguous(memory_format=memory_format).requires_grad_(True)
        x64 = x.detach().double().requires_grad_(True)
        y, expected = ours(x), theirs(x64)
        torch_error = (F.batch_norm(x.detach(), None, None, training=True).double() - expected).abs().max().item()
        torch.testing.assert_close(y.double(), expected, rtol=0, atol=max(2e-4, 2 * torch_error))
        dy = torch.randn(shape)
        torch.testing.assert_close(*(torch.autograd.grad(out, t, dy.to(out.dtype))[0].double()
                                     for out, t in ((y, x), (expected, x64))), rtol=0, atol=1e-4)  # fmt: skip
        torch.testing.assert_close(ours.running_mean.double(), theirs.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.running_var.double(), theirs.running_var, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("layout", ["one sample (group-norm rows)", "batch-norm kernel, short rows"])
def test_running_variance_far_below_eps_keeps_its_digits(layout):
    """A variance of 1e-8 with eps 1e-5: the running estimate is the variance itself, not a difference against eps
    (float32 leaves 1e-4 relative error there). Merged rows and torch's channels_last kernel are left out: at a
    mean 3e4 standard deviations from zero their float32 means bound the variance to about 1e-4 relative (an
    absolute 1e-12 here), as torch's own channels_last kernel; the test above covers them at ordinary ratios."""
    torch.manual_seed(0)
    shape, memory_format = LAYOUTS[layout]
    x = (torch.randn(shape, dtype=torch.float64) * 1e-4 + 3).float().contiguous(memory_format=memory_format)
    ours = ParamFreeNorm(shape[1], "batch", momentum=1.0)
    theirs = torch.nn.BatchNorm2d(shape[1], affine=False, momentum=1.0).double()
    ours(x)
    theirs(x.double())
    torch.testing.assert_close(ours.running_var.double(), theirs.running_var, rtol=1e-5, atol=0)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_conditional_batchnorm_tracks_like_batchnorm2d(momentum):
    torch.manual_seed(0)
    ours = ConditionalBatchNorm2d(4, num_classes=3, momentum=momentum)
    theirs = torch.nn.BatchNorm2d(4, affine=False, momentum=momentum)
    y = torch.tensor([0, 2])
    for _ in range(3):
        x = 2 + torch.randn(2, 4, 5, 5)
        torch.testing.assert_close(ours(x, y), theirs(x))  # zero-initialised modulation: plain BN
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)
    ours.eval()
    theirs.eval()
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(ours(x, y), theirs(x))


def test_conditional_batchnorm_without_running_stats_uses_batch_stats_in_eval():
    ours = ConditionalBatchNorm2d(4, cond_dim=7, track_running_stats=False).eval()
    assert ours.running_mean is None
    x = torch.randn(3, 4, 5, 5)
    torch.testing.assert_close(ours(x, torch.randn(3, 7)), F.batch_norm(x, None, None, training=True))


def test_functional_eval_uses_running_stats_and_gradients_treat_them_as_constants():
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    rm, rv = torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64) + 0.5
    y = modulated_norm(x, norm="batch", running_mean=rm, running_var=rv, training=False)
    expected = F.batch_norm(x, rm, rv, training=False)
    torch.testing.assert_close(y, expected)
    (dx,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(dx, (1 / (rv + 1e-5).sqrt()).reshape(1, 4, 1, 1).expand_as(x))


def test_running_stats_in_another_dtype_than_the_input():
    """fp64 activations with fp32 buffers take the general path; it must match torch's update formula."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64) * 3 + 1
    rm, rv = torch.zeros(3), torch.ones(3)
    modulated_norm(x, norm="batch", running_mean=rm, running_var=rv, momentum=0.25)
    var, mean = torch.var_mean(x, dim=(0, 2, 3))
    torch.testing.assert_close(rm, (0.25 * mean).float())
    torch.testing.assert_close(rv, (0.75 + 0.25 * var).float())


def test_one_value_per_channel_in_training_raises_torchs_error():
    x = torch.randn(1, 3, 1, 1)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training") as ours:
        modulated_norm(x, norm="batch")
    with pytest.raises(ValueError, match="Expected more than 1 value") as theirs:
        F.batch_norm(x, None, None, training=True)
    assert str(ours.value) == str(theirs.value)
    # Eval mode with running statistics is fine, as in torch.
    modulated_norm(x, norm="batch", running_mean=torch.zeros(3), running_var=torch.ones(3), training=False)


def test_float64_cumulative_average_keeps_float64_precision():
    """momentum=None: the factor 1 / num_batches_tracked is formed in the buffers' dtype, as torch's Python float."""
    torch.manual_seed(0)
    theirs = torch.nn.BatchNorm2d(4, affine=False, momentum=None).double()
    ours = ParamFreeNorm(4, "batch", momentum=None, dtype=torch.float64)
    for step in range(3):
        x = torch.randn(4, 4, 6, 6, dtype=torch.float64) + step
        theirs(x)
        ours(x)
    assert (theirs.running_mean - ours.running_mean).abs().max() < 1e-14
    assert (theirs.running_var - ours.running_var).abs().max() < 1e-14
