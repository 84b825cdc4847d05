"""Bad input raises a clear TypeError/ValueError naming the argument, the expected and the actual value."""

from __future__ import annotations

import pytest
import torch

from spadenorm import CLADE, SPADE, AdaIN, ConditionalBatchNorm2d, ParamFreeNorm
from spadenorm.functional import adain, class_modulated_norm, modulated_norm
from spadenorm.migration import parse_spade_config

X = torch.randn(2, 4, 5, 5)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        (
            {"x": torch.ones(2, 4, 5, 5, dtype=torch.long)},
            TypeError,
            r"x must be a floating-point tensor, got dtype torch\.int64",
        ),
        ({"x": torch.randn(4, 5)}, ValueError, r"x must have 3, 4 or 5 dimensions .* got 2 with shape \(4, 5\)"),
        ({"x": [1.0, 2.0]}, TypeError, r"x must be a torch\.Tensor, got list"),
        ({"gamma": torch.randn(3, 4, 5, 5)}, ValueError, r"gamma must have shape \(C,\) or .* got \(3, 4, 5, 5\)"),
        ({"beta": torch.randn(2, 4, 7, 5)}, ValueError, r"beta must have shape .* got \(2, 4, 7, 5\)"),
        ({"gamma": torch.randn(5)}, ValueError, r"gamma of shape \(C,\) must have C = 4 entries .* got shape \(5,\)"),
        ({"gamma": torch.randn(2, 4, 5)}, ValueError, r"gamma must have shape .* rank 4 .* got \(2, 4, 5\)"),
        ({"gamma": torch.ones(4, dtype=torch.long)}, TypeError, r"gamma must be a floating-point tensor"),
        ({"norm": "batchnorm"}, ValueError, r"norm must be one of \('instance', .*\), got 'batchnorm'"),
        ({"norm": "group"}, ValueError, r"num_groups is required with norm='group', got None"),
        (
            {"norm": "group", "num_groups": 3},
            ValueError,
            r"num_groups must be a positive divisor of the 4 channels, got 3",
        ),
        (
            {"norm": "group", "num_groups": 0},
            ValueError,
            r"num_groups must be a positive divisor of the 4 channels, got 0",
        ),
        ({"num_groups": 2}, ValueError, r"num_groups is only used with norm='group', got num_groups=2"),
        ({"eps": -1e-5}, ValueError, r"eps must be >= 0, got -1e-05"),
        ({"eps": float("nan")}, ValueError, r"eps must be >= 0, got nan"),
        ({"momentum": 1.5, "norm": "batch"}, ValueError, r"momentum must be in \[0, 1\] or None, got 1.5"),
        (
            {"norm": "batch", "running_mean": torch.zeros(3), "running_var": torch.ones(3)},
            ValueError,
            r"running_mean must have shape \(4,\) to match x's channels, got \(3,\)",
        ),
        (
            {"norm": "batch", "running_mean": torch.zeros(4), "running_var": torch.ones(4, 1)},
            ValueError,
            r"running_var must have shape \(4,\) to match x's channels, got \(4, 1\)",
        ),
        (
            {"norm": "batch", "running_mean": torch.zeros(4)},
            ValueError,
            r"running_mean and running_var must be given together",
        ),
        (
            {"norm": "instance", "running_mean": torch.zeros(4), "running_var": torch.ones(4)},
            ValueError,
            r"only used with batch norms",
        ),
        ({"norm": "batch", "training": False}, ValueError, r"training=False uses the running statistics"),
        (
            {"norm": "batch", "running_mean": torch.zeros(4), "running_var": torch.ones(4), "momentum": None},
            ValueError,
            r"momentum=None .* needs num_batches_tracked, got None",
        ),
        ({"x": torch.randn(2, 4, 1, 1)}, ValueError, r"Expected more than 1 spatial element when training"),
    ],
)
def test_modulated_norm_rejects(kwargs, error, pattern):
    kwargs = dict(kwargs)
    x = kwargs.pop("x", X)
    with pytest.raises(error, match=pattern):
        modulated_norm(x, **kwargs)


def test_class_modulated_norm_rejects_out_of_range_and_non_integer_labels():
    table = torch.ones(3, 4)
    with pytest.raises(
        ValueError, match=r"labels must hold class ids in \[0, 3\), got id 255 \(ids range over \[0, 255\]\)"
    ):
        class_modulated_norm(X, torch.tensor([[[0, 255]]]).expand(2, 1, 2), table, table)
    with pytest.raises(ValueError, match=r"got id -1"):
        class_modulated_norm(X, -torch.ones(2, 5, 5, dtype=torch.long), table, table)
    with pytest.raises(TypeError, match=r"labels must hold integer class ids .* got torch\.float32"):
        class_modulated_norm(X, torch.zeros(2, 5, 5), table, table)
    with pytest.raises(ValueError, match=r"labels batch size must match x's 2, got 3"):
        class_modulated_norm(X, torch.zeros(3, 5, 5, dtype=torch.long), table, table)
    with pytest.raises(ValueError, match=r"labels must have shape \(N, H, W\) or \(N, 1, H, W\)"):
        class_modulated_norm(X, torch.zeros(2, 2, 5, 5, dtype=torch.long), table, table)
    with pytest.raises(ValueError, match=r"gamma_table must have shape \(num_classes, 4\) .* got \(3, 5\)"):
        class_modulated_norm(X, torch.zeros(2, 5, 5, dtype=torch.long), torch.ones(3, 5), table)
    with pytest.raises(ValueError, match=r"beta_table must have gamma_table's shape \(3, 4\), got \(2, 4\)"):
        class_modulated_norm(X, torch.zeros(2, 5, 5, dtype=torch.long), table, torch.ones(2, 4))


def test_adain_rejects_mismatched_style():
    with pytest.raises(ValueError, match=r"style must have shape \(2 or 1, 4, \.\.\.\) .* got \(2, 3, 5, 5\)"):
        adain(X, torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"eps must be >= 0"):
        adain(X, X, eps=-1.0)


def test_spade_rejects_bad_segmaps():
    layer = SPADE(4, label_nc=3)
    with pytest.raises(ValueError, match=r"segmap must hold class ids in \[0, 3\), got id 255"):
        layer(X, torch.full((2, 5, 5), 255))
    with pytest.raises(ValueError, match=r"segmap must have shape \(2, 3, h, w\) .* got \(2, 4, 5, 5\)"):
        layer(X, torch.rand(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"segmap must have shape \(2, 3, h, w\) .* got \(1, 3, 5, 5\)"):
        layer(X, torch.rand(1, 3, 5, 5))
    with pytest.raises(ValueError, match=r"segmap batch size must match x's 2, got 1"):
        layer(X, torch.zeros(1, 5, 5, dtype=torch.long))
    with pytest.raises(TypeError, match=r"segmap must hold integer class ids .* got torch\.bool"):
        layer(X, torch.zeros(2, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"x must have num_features=4 channels, got 5"):
        layer(torch.randn(2, 5, 5, 5), torch.zeros(2, 5, 5, dtype=torch.long))


@pytest.mark.parametrize(
    ("factory", "pattern"),
    [
        (lambda: SPADE(4, 3, kernel_size=4), r"kernel_size must be a positive odd int .* got 4"),
        (lambda: SPADE(4, 0), r"label_nc must be a positive int, got 0"),
        (lambda: SPADE(4, 3, norm="spectral"), r"norm must be one of .* got 'spectral'"),
        (lambda: SPADE(4, 3, interpolation="cubic"), r"interpolation must be one of .* got 'cubic'"),
        (
            lambda: SPADE(4, 3, interpolation="linear"),
            r"interpolation 'linear' resizes maps of 1 spatial dimension\(s\), got spatial_dims=2",
        ),
        (lambda: SPADE(4, 3, spatial_dims=4), r"spatial_dims must be 1, 2 or 3, got 4"),
        (lambda: SPADE(4, 3, hidden_channels=-1), r"hidden_channels must be >= 0 \(0: no shared layer\), got -1"),
        (lambda: SPADE(4, 3, activation="gelu"), r"activation must be one of \('relu', 'leaky_relu'\), got 'gelu'"),
        (lambda: SPADE(6, 3, norm="group", num_groups=4), r"num_groups must be a positive divisor of the 6 channels"),
        (lambda: ParamFreeNorm(0), r"num_features must be a positive int, got 0"),
        (lambda: ConditionalBatchNorm2d(4), r"give exactly one of num_classes and cond_dim"),
        (lambda: ConditionalBatchNorm2d(4, 3, 5), r"give exactly one of num_classes and cond_dim"),
        (lambda: AdaIN(style_dim=8), r"style_dim=8 needs num_features"),
        (lambda: CLADE(4, 0), r"num_classes must be a positive int, got 0"),
        (lambda: parse_spade_config("spadesyncbatch3x5"), r"config must look like .* got 'spadesyncbatch3x5'"),
        (lambda: parse_spade_config("spadeinstance"), r"got 'spadeinstance'"),
    ],
)
def test_constructors_reject(factory, pattern):
    with pytest.raises(ValueError, match=pattern):
        factory()


def test_module_forward_rejects_bad_conditions():
    cbn = ConditionalBatchNorm2d(4, num_classes=3)
    with pytest.raises(ValueError, match=r"y must hold class ids in \[0, 3\), got id 3"):
        cbn(X, torch.tensor([0, 3]))
    with pytest.raises(TypeError, match=r"y must hold integer class ids .* got torch\.float32"):
        cbn(X, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"y must be class ids of shape \(2,\), got \(2, 1\)"):
        cbn(X, torch.tensor([[0], [1]]))
    cbn_vec = ConditionalBatchNorm2d(4, cond_dim=6)
    with pytest.raises(ValueError, match=r"y must be condition vectors of shape \(2, 6\), got \(2, 5\)"):
        cbn_vec(X, torch.randn(2, 5))
    with pytest.raises(TypeError, match=r"y must be floating-point condition vectors, got dtype torch\.int64"):
        cbn_vec(X, torch.zeros(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"a style vector \(N, style_dim\) needs AdaIN\(num_features, style_dim\)"):
        AdaIN()(X, torch.randn(2, 8))
    with pytest.raises(ValueError, match=r"style vectors must have shape \(2, 8\), got \(2, 7\)"):
        AdaIN(4, 8)(X, torch.randn(2, 7))
    with pytest.raises(ValueError, match=r"labels must hold class ids in \[0, 5\), got id 5"):
        CLADE(4, 5)(X, torch.full((2, 5, 5), 5))


def test_label_range_check_reads_no_device_value_on_the_host(monkeypatch):
    """Off the CPU the range check is a device-side assertion: no host sync per layer, no int() of a device value."""
    from spadenorm import _validation

    messages = []
    monkeypatch.setattr(torch, "_assert_async", lambda condition, message: messages.append(message))
    labels = torch.zeros(2, 3, 3, dtype=torch.long, device="meta")  # any host read of a meta tensor raises
    _validation.check_label_range(labels, 5, "labels")
    assert messages == ["labels holds class ids outside [0, 5)"]


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_class_modulated_norm_checks_the_norm_before_touching_labels(backend, monkeypatch):
    """Statistics arguments are resolved first: a bad norm wins over bad labels, and no label is read or resized."""
    if backend == "triton":
        pytest.importorskip("triton")
    import spadenorm.functional

    def no_tensor_work(*args, **kwargs):
        raise AssertionError("tensor work before the arguments were checked")

    monkeypatch.setattr(spadenorm.functional, "resize_labels", no_tensor_work)
    monkeypatch.setattr(spadenorm.functional._backend, "modulated_norm", no_tensor_work)
    bad_labels = torch.full((2, 5, 5), 255)
    with spadenorm.use_backend(backend), pytest.raises(ValueError, match=r"norm must be one of .* got 'bogus'"):
        class_modulated_norm(X, bad_labels, torch.ones(3, 4), torch.ones(3, 4), norm="bogus")
    with spadenorm.use_backend(backend), pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
        class_modulated_norm(X, bad_labels, torch.ones(3, 4), torch.ones(3, 4), norm="batch", momentum=2.0)


def test_process_group_only_with_sync_batch():
    group = object()
    with pytest.raises(
        TypeError, match=r"process_group must be a torch\.distributed\.ProcessGroup or None, got object"
    ):
        modulated_norm(X, process_group=group)


@pytest.mark.parametrize(
    ("scale", "error", "pattern"),
    [
        (
            torch.randn(2, 4, 5, 5),
            ValueError,
            r"scale must be per sample and channel or per channel.* got \(2, 4, 5, 5\)",
        ),
        (torch.randn(3, 4), ValueError, r"scale must be per sample and channel .* \(N, C\) = \(2, 4\).* got \(3, 4\)"),
        (torch.randn(5), ValueError, r"scale must be .* got \(5,\)"),
        (
            torch.ones(2, 4, dtype=torch.long),
            TypeError,
            r"scale must be a floating-point tensor, got dtype torch\.int64",
        ),
        ([1.0], TypeError, r"scale must be a torch\.Tensor or None, got list"),
    ],
)
def test_scale_and_shift_must_be_per_sample_channel(scale, error, pattern):
    with pytest.raises(error, match=pattern):
        modulated_norm(X, scale=scale)
    with pytest.raises(error, match=pattern.replace("scale", "shift")):
        modulated_norm(X, shift=scale)
    with pytest.raises(error, match=pattern):
        SPADE(4, 3)(X, torch.zeros(2, 5, 5, dtype=torch.long), scale=scale)
