"""Argument checks shared by the functional API and the modules.

Every check runs before any computation and raises ``ValueError`` (wrong value or shape) or ``TypeError`` (wrong
kind of object or dtype) with a message that names the argument, the expected and the actual value.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

import torch
from torch import Tensor

NormName = Literal["instance", "batch", "sync_batch", "group", "layer", "none"]
NORMS: tuple[str, ...] = ("instance", "batch", "sync_batch", "group", "layer", "none")
BATCH_NORMS: tuple[str, ...] = ("batch", "sync_batch")


def check_norm(norm: object) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return str(norm)


def check_input(x: object, name: str = "x") -> Tensor:
    """``x`` is a floating-point tensor of rank 3, 4 or 5: (N, C, L), (N, C, H, W) or (N, C, D, H, W)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() not in (3, 4, 5):
        raise ValueError(
            f"{name} must have 3, 4 or 5 dimensions (N, C, *spatial), got {x.dim()} with shape {tuple(x.shape)}"
        )
    return x


def check_positive_int(value: object, name: str, *, optional: bool = False) -> int | None:
    """``value`` is an int >= 1 (bools rejected); ``None`` passes when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        allowed = "a positive int or None" if optional else "a positive int"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    if not eps >= 0:  # also rejects NaN
        raise ValueError(f"eps must be >= 0, got {eps}")
    return float(eps)


def check_momentum(momentum: object) -> float | None:
    if momentum is None:
        return None
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
        raise TypeError(f"momentum must be a real number in [0, 1] or None, got {type(momentum).__name__}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1] or None, got {momentum}")
    return float(momentum)


def check_num_groups(norm: str, num_groups: object, num_channels: int) -> int | None:
    if norm != "group":
        if num_groups is not None:
            raise ValueError(
                f"num_groups is only used with norm='group', got num_groups={num_groups!r} with norm={norm!r}"
            )
        return None
    if num_groups is None:
        raise ValueError("num_groups is required with norm='group', got None")
    if isinstance(num_groups, bool) or not isinstance(num_groups, int):
        raise TypeError(f"num_groups must be an int, got {type(num_groups).__name__}")
    if num_groups <= 0 or num_channels % num_groups != 0:
        raise ValueError(f"num_groups must be a positive divisor of the {num_channels} channels, got {num_groups}")
    return num_groups


def modulation_shape(t: Tensor, x: Tensor, name: str) -> tuple[int, ...]:
    """Validate a gamma/beta tensor against ``x`` and return its shape with ``x``'s rank.

    Accepted: (C,), or any shape of rank ``x.dim()`` whose sizes are 1 or equal to ``x``'s: full spatial
    (N, C, H, W), per sample and channel (N, C, 1, 1), per channel (1, C, 1, 1), and so on.
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.device != x.device:
        raise ValueError(f"{name} must be on x's device {x.device}, got {t.device}")
    if t.shape == x.shape:
        return tuple(t.shape)
    c = x.shape[1]
    if t.dim() == 1:
        if t.shape[0] != c:
            raise ValueError(f"{name} of shape (C,) must have C = {c} entries to match x, got shape {tuple(t.shape)}")
        return (1, c) + (1,) * (x.dim() - 2)
    ok = t.dim() == x.dim() and all(s in (1, xs) for s, xs in zip(t.shape, x.shape, strict=True))
    if not ok:
        raise ValueError(
            f"{name} must have shape (C,) or a shape of rank {x.dim()} broadcastable to x's {tuple(x.shape)} "
            f"without enlarging it (e.g. {tuple(x.shape)}, {tuple(x.shape[:2]) + (1,) * (x.dim() - 2)}), "
            f"got {tuple(t.shape)}"
        )
    return tuple(t.shape)


def check_running_stats(
    norm: str, running_mean: object, running_var: object, num_channels: int, training: bool
) -> None:
    if norm not in BATCH_NORMS:
        if running_mean is not None or running_var is not None:
            raise ValueError(
                f"running_mean/running_var are only used with batch norms {BATCH_NORMS}, got norm={norm!r}"
            )
        return
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            "running_mean and running_var must be given together, got "
            f"running_mean={'None' if running_mean is None else 'a tensor'}, "
            f"running_var={'None' if running_var is None else 'a tensor'}"
        )
    if running_mean is None:
        if not training:
            raise ValueError("training=False uses the running statistics, but running_mean and running_var are None")
        return
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or None, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if tuple(t.shape) != (num_channels,):
            raise ValueError(f"{name} must have shape ({num_channels},) to match x's channels, got {tuple(t.shape)}")


def check_batch_size(norm: str, x: Tensor, training: bool) -> None:
    """Raise torch's own errors when a training-mode statistic would be taken over a single value."""
    if not training and norm in BATCH_NORMS:
        return
    spatial = math.prod(x.shape[2:])
    if norm in BATCH_NORMS:
        if x.shape[0] * spatial == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.size()}")
    elif norm == "instance" and spatial == 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size {x.size()}")


def check_label_map(
    labels: object, num_classes: int, x: Tensor, name: str = "labels", *, check_range: bool = True
) -> Tensor:
    """An integer label map for ``x``: (N, *spatial) or (N, 1, *spatial), ids in [0, num_classes).

    ``spatial`` has ``x``'s spatial rank but any size (the map is resized to ``x`` later). Returns the map without
    its channel dimension.
    """
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer class ids, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class ids (an integer dtype such as torch.long), got {labels.dtype}")
    spatial_rank = x.dim() - 2
    if labels.dim() == spatial_rank + 2 and labels.shape[1] == 1:
        labels = labels.squeeze(1)
    if labels.dim() != spatial_rank + 1:
        shape = ", ".join("HW"[-spatial_rank:] if spatial_rank <= 2 else "DHW")
        raise ValueError(
            f"{name} must have shape (N, {shape}) or (N, 1, {shape}) to match x of rank {x.dim()}, "
            f"got {tuple(labels.shape)}"
        )
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"{name} batch size must match x's {x.shape[0]}, got {labels.shape[0]}")
    if labels.device != x.device:
        raise ValueError(f"{name} must be on x's device {x.device}, got {labels.device}")
    if check_range:
        check_label_range(labels, num_classes, name)
    return labels


def check_label_range(labels: Tensor, num_classes: int, name: str) -> None:
    if labels.numel() == 0:
        return
    if torch.compiler.is_compiling():
        torch._assert_async(
            ((labels >= 0) & (labels < num_classes)).all(), f"{name} holds class ids outside [0, {num_classes})"
        )
        return
    lo, hi = torch.aminmax(labels)
    lo, hi = int(lo), int(hi)
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{name} must hold class ids in [0, {num_classes}), got id {bad} (ids range over [{lo}, {hi}]); "
            "map 'don't care' ids such as 255 to a class of their own before calling"
        )
