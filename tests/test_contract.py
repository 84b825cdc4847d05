"""The error contract and the rank rules, across every public constructor, forward and function.

A wrong *kind* of argument (a string for a number, a number for a string, anything for a tensor) raises
``TypeError``; a wrong *value* raises ``ValueError``; either names the argument. Ranks: ``SPADE`` takes
(N, C, *spatial) with its ``spatial_dims`` (2 by default: (N, C, H, W)); ``ConditionalBatchNorm2d``
(``torch.nn.BatchNorm2d``'s contract) takes (N, C, H, W); ``ParamFreeNorm``, ``CLADE``, ``AdaIN``,
``ConditionalBatchNorm`` and the functions take (N, C, *spatial) with 1 to 3 spatial dimensions.
"""

from __future__ import annotations

import pytest
import torch

import spadenorm
from spadenorm import CLADE, SPADE, AdaIN, ConditionalBatchNorm, ConditionalBatchNorm2d, ParamFreeNorm
from spadenorm.functional import adain, class_modulated_norm, modulated_norm, resize_labels

X = torch.randn(2, 4, 5, 5)
LABELS = torch.zeros(2, 5, 5, dtype=torch.long)
TABLE = torch.ones(3, 4)

# (what, callable taking keyword arguments, valid keyword arguments, the arguments to replace by a wrong kind)
CALLS = [
    ("SPADE", SPADE, {"num_features": 4, "label_nc": 3},
     ["num_features", "label_nc", "spatial_dims", "norm", "hidden_channels", "kernel_size", "activation",
      "norm_affine", "eps", "momentum", "interpolation"]),
    ("SPADE", SPADE, {"num_features": 4, "label_nc": 3, "norm": "group", "num_groups": 2}, ["num_groups"]),
    ("SPADE.from_config", SPADE.from_config, {"config": "spadebatch3x3", "num_features": 4, "label_nc": 3},
     ["config", "num_features", "label_nc"]),
    ("CLADE", CLADE, {"num_features": 4, "num_classes": 3}, ["num_features", "num_classes", "norm", "eps", "momentum"]),
    ("ConditionalBatchNorm2d", ConditionalBatchNorm2d, {"num_features": 4, "num_classes": 3},
     ["num_features", "num_classes", "eps", "momentum", "track_running_stats"]),
    ("ConditionalBatchNorm2d", ConditionalBatchNorm2d, {"num_features": 4, "cond_dim": 3}, ["cond_dim"]),
    ("ConditionalBatchNorm", ConditionalBatchNorm, {"num_features": 4, "num_classes": 3}, ["num_features"]),
    ("AdaIN", AdaIN, {"num_features": 4, "style_dim": 3}, ["num_features", "style_dim", "eps"]),
    ("ParamFreeNorm", ParamFreeNorm, {"num_features": 4, "norm": "batch"},
     ["num_features", "norm", "eps", "momentum", "affine"]),
    ("SPADE.forward", SPADE(4, 3), {"x": X, "segmap": LABELS}, ["x", "segmap", "scale", "shift"]),
    ("CLADE.forward", CLADE(4, 3), {"x": X, "labels": LABELS}, ["x", "labels", "scale", "shift"]),
    ("ConditionalBatchNorm2d.forward", ConditionalBatchNorm2d(4, 3), {"x": X, "y": torch.tensor([0, 1])}, ["x", "y"]),
    ("AdaIN.forward", AdaIN(), {"x": X, "style": X}, ["x", "style"]),
    ("ParamFreeNorm.forward", ParamFreeNorm(4), {"x": X}, ["x"]),
    ("modulated_norm", modulated_norm, {"x": X},
     ["x", "gamma", "beta", "norm", "num_groups", "eps", "momentum", "training", "process_group",
      "num_batches_tracked", "scale", "shift"]),
    ("modulated_norm", modulated_norm,
     {"x": X, "norm": "batch", "running_mean": torch.zeros(4), "running_var": torch.ones(4)},
     ["running_mean", "running_var"]),
    ("class_modulated_norm", class_modulated_norm,
     {"x": X, "labels": LABELS, "gamma_table": TABLE, "beta_table": TABLE},
     ["x", "labels", "gamma_table", "beta_table", "norm", "eps", "training", "scale", "shift"]),
    ("adain", adain, {"content": X, "style": X}, ["content", "style", "eps"]),
    ("resize_labels", resize_labels, {"labels": LABELS, "size": (3, 3)}, ["labels", "size"]),
    ("set_backend", spadenorm.set_backend, {"name": "torch"}, ["name"]),
]  # fmt: skip
STRING_ARGUMENTS = {"norm", "interpolation", "config", "name", "activation"}
CASES = [(f"{what}:{arg}", fn, kwargs, arg) for what, fn, kwargs, args in CALLS for arg in args]


@pytest.mark.parametrize(("case", "fn", "kwargs", "argument"), CASES, ids=[c[0] for c in CASES])
def test_a_wrong_kind_of_argument_is_a_type_error_naming_it(case, fn, kwargs, argument):
    wrong = 4 if argument in STRING_ARGUMENTS else "4"  # a number where a string belongs, else a string
    fn(**kwargs)  # the valid call runs
    shown = "backend" if argument == "name" else argument
    with pytest.raises(TypeError, match=rf"\b{shown}\b"):
        fn(**{**kwargs, argument: wrong})


def test_use_backend_rejects_a_wrong_kind_too():
    with pytest.raises(TypeError, match="backend must be a str"), spadenorm.use_backend(4):  # type: ignore[arg-type]
        pass


@pytest.mark.parametrize("rank", [3, 4, 5])
def test_rank_rules(rank):
    x = torch.randn(2, 4, *(5, 4, 3)[: rank - 2])
    labels = torch.zeros(2, *x.shape[2:], dtype=torch.long)
    assert ParamFreeNorm(4)(x).shape == x.shape
    assert CLADE(4, 3)(x, labels).shape == x.shape
    assert AdaIN()(x, x).shape == x.shape
    assert AdaIN(4, style_dim=3)(x, torch.randn(2, 3)).shape == x.shape
    assert ConditionalBatchNorm(4, 3)(x, torch.tensor([0, 1])).shape == x.shape
    assert SPADE(4, 3, spatial_dims=rank - 2, hidden_channels=8)(x, labels).shape == x.shape
    assert modulated_norm(x, x, x).shape == x.shape
    assert class_modulated_norm(x, labels, TABLE, TABLE).shape == x.shape
    if rank == 4:
        assert SPADE(4, 3)(x, labels).shape == x.shape
        assert ConditionalBatchNorm2d(4, 3)(x, torch.tensor([0, 1])).shape == x.shape
        return
    with pytest.raises(ValueError, match=r"x must have 4 dimensions \(N, C, H, W\), got " + str(rank)):
        SPADE(4, 3)(x, labels)
    with pytest.raises(ValueError, match=r"x must have 4 dimensions \(N, C, H, W\), got " + str(rank)):
        ConditionalBatchNorm2d(4, 3)(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"segmap must have shape \(2, 3, h, w\) .* got"):
        SPADE(4, 3)(torch.randn(2, 4, 5, 4), torch.rand(2, 3, *x.shape[2:]))


@pytest.mark.parametrize("rank", [2, 6])
def test_ranks_outside_one_to_three_spatial_dims_are_refused(rank):
    x = torch.randn(*(2, 4, 3, 3, 3, 3)[:rank])
    for call in (lambda: ParamFreeNorm(4)(x), lambda: modulated_norm(x), lambda: AdaIN()(x, x)):
        with pytest.raises(ValueError, match=rf"x must have 3, 4 or 5 dimensions \(N, C, \*spatial\), got {rank}"):
            call()
