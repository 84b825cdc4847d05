"""Argument checks shared by the functional API and the modules, and their resolution into the specs of ``_core``.

Every check runs before any computation and raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError``
(wrong value or shape) with a message that names the argument, the expected and the actual value.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.distributed as dist
from torch import Tensor

from ._core import BATCH_NORMS, NORMS, NormName, NormSpec, RunningStats


def check_norm(norm: object) -> NormName:
    if not isinstance(norm, str):
        raise TypeError(f"norm must be a str, one of {NORMS}, got {type(norm).__name__}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm  # type: ignore[return-value]  # membership in NORMS is the Literal


def check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    """``value`` is one of the strings ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {choices}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


_SHAPES = {3: "(N, C, L)", 4: "(N, C, H, W)", 5: "(N, C, D, H, W)"}


def check_input(x: object, name: str = "x", ranks: tuple[int, ...] = (3, 4, 5)) -> Tensor:
    """``x`` is a floating-point tensor of one of ``ranks``: (N, C, L), (N, C, H, W) or (N, C, D, H, W)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() not in ranks:
        if len(ranks) == 1:
            expected = f"{ranks[0]} dimensions {_SHAPES[ranks[0]]}"
        else:
            expected = f"{', '.join(map(str, ranks[:-1]))} or {ranks[-1]} dimensions (N, C, *spatial)"
        raise ValueError(f"{name} must have {expected}, got {x.dim()} with shape {tuple(x.shape)}")
    return x


def check_channels(x: Tensor, num_features: int, name: str = "x") -> None:
    if x.shape[1] != num_features:
        raise ValueError(f"{name} must have num_features={num_features} channels, got {x.shape[1]}")


def check_positive_int(value: object, name: str) -> int:
    """``value`` is an int >= 1 (bools are not ints here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def check_optional_positive_int(value: object, name: str) -> int | None:
    return None if value is None else check_positive_int(value, name)


def check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    value = float(eps)
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"eps must be >= 0, got {value}")
    return value


def check_momentum(momentum: object) -> float | None:
    if momentum is None or (type(momentum) is float and 0.0 <= momentum <= 1.0):  # the common cases, cheaply
        return momentum
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
        raise TypeError(f"momentum must be a real number in [0, 1] or None, got {type(momentum).__name__}")
    value = float(momentum)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"momentum must be in [0, 1] or None, got {value}")
    return value


def check_num_groups(norm: str, num_groups: object, num_channels: int) -> int | None:
    if num_groups is not None and (isinstance(num_groups, bool) or not isinstance(num_groups, int)):
        raise TypeError(f"num_groups must be an int or None, got {type(num_groups).__name__}")
    if norm != "group":
        if num_groups is not None:
            raise ValueError(
                f"num_groups is only used with norm='group', got num_groups={num_groups!r} with norm={norm!r}"
            )
        return None
    if num_groups is None:
        raise ValueError("num_groups is required with norm='group', got None")
    if num_groups <= 0 or num_channels % num_groups != 0:
        raise ValueError(f"num_groups must be a positive divisor of the {num_channels} channels, got {num_groups}")
    return num_groups


_SPECS: dict[tuple[object, ...], NormSpec] = {}
"""Resolved specs of argument values that passed the checks (plain str, int or None, float, a concrete channel count;
the default group)."""


def norm_spec(norm: object, num_groups: object, eps: object, num_channels: int, process_group: object) -> NormSpec:
    """Check the statistics arguments and resolve them into a :class:`~spadenorm._core.NormSpec`.

    Values that passed once are remembered, so that a functional call in a loop pays a dictionary lookup for them;
    the key holds the exact types (``True`` and ``1`` and ``1.0`` are equal as keys, not as arguments).
    """
    key = (norm, num_groups, type(num_groups), eps, type(eps), num_channels)
    cacheable = (
        process_group is None
        and type(norm) is str
        and (num_groups is None or type(num_groups) is int)
        and type(eps) is float
        and type(num_channels) is int
        and not torch.compiler.is_compiling()  # a traced read of the cache would guard on its contents
    )
    if cacheable and (spec := _SPECS.get(key)) is not None:
        return spec
    spec = _norm_spec(norm, num_groups, eps, num_channels, process_group)
    if cacheable and len(_SPECS) < 1024:
        _SPECS[key] = spec
    return spec


def _norm_spec(norm: object, num_groups: object, eps: object, num_channels: int, process_group: object) -> NormSpec:
    name = check_norm(norm)
    groups = check_num_groups(name, num_groups, num_channels)
    if process_group is not None:
        if not (dist.is_available() and isinstance(process_group, dist.ProcessGroup)):
            raise TypeError(
                f"process_group must be a torch.distributed.ProcessGroup or None, got {type(process_group).__name__}"
            )
        if name != "sync_batch":
            raise ValueError(f"process_group is only used with norm='sync_batch', got norm={name!r}")
    return NormSpec(name, groups, check_eps(eps), process_group)


def _check_running_tensor(t: object, name: str, num_channels: int) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if tuple(t.shape) != (num_channels,):
        raise ValueError(f"{name} must have shape ({num_channels},) to match x's channels, got {tuple(t.shape)}")
    return t


def running_stats(
    spec: NormSpec,
    running_mean: object,
    running_var: object,
    momentum: object,
    num_batches_tracked: object,
    num_channels: int,
    training: bool,
) -> RunningStats | None:
    """Check the running-statistics arguments against ``spec`` and resolve them (``None`` when there are none)."""
    if running_mean is None and running_var is None and num_batches_tracked is None and (training or not spec.is_batch):
        check_momentum(momentum)
        return None
    momentum = check_momentum(momentum)
    if num_batches_tracked is not None and not isinstance(num_batches_tracked, Tensor):
        raise TypeError(f"num_batches_tracked must be a tensor or None, got {type(num_batches_tracked).__name__}")
    if not spec.is_batch:
        if running_mean is not None or running_var is not None:
            raise ValueError(
                f"running_mean/running_var are only used with batch norms {BATCH_NORMS}, got norm={spec.norm!r}"
            )
        return None
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            "running_mean and running_var must be given together, got "
            f"running_mean={'None' if running_mean is None else 'a tensor'}, "
            f"running_var={'None' if running_var is None else 'a tensor'}"
        )
    if running_mean is None:
        if not training:
            raise ValueError("training=False uses the running statistics, but running_mean and running_var are None")
        return None
    mean = _check_running_tensor(running_mean, "running_mean", num_channels)
    var = _check_running_tensor(running_var, "running_var", num_channels)
    if momentum is None and training and num_batches_tracked is None:
        raise ValueError("momentum=None (cumulative moving average) needs num_batches_tracked, got None")
    return RunningStats(mean, var, momentum, num_batches_tracked)


def check_batch_size(spec: NormSpec, x: Tensor, training: bool) -> None:
    """Raise torch's own errors when a training-mode statistic would be taken over a single value."""
    if x.shape[-1] != 1 or not spec.uses_batch_statistics(training):  # a last size other than 1: 0 or 2+ values
        return
    spatial = math.prod(x.shape[2:])
    if spec.is_batch:
        if x.shape[0] * spatial == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.size()}")
    elif spec.norm == "instance" and spatial == 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size {x.size()}")


def _check_float_tensor_beside(t: object, x: Tensor, name: str) -> Tensor:
    """``t`` is a floating-point tensor on x's device."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.device != x.device:
        raise ValueError(f"{name} must be on x's device {x.device}, got {t.device}")
    return t


def check_modulation(t: object, x: Tensor, name: str) -> Tensor | None:
    """A gamma/beta tensor (or ``None``) checked against ``x`` and returned with ``x``'s rank (a view).

    Accepted: (C,), or any shape of rank ``x.dim()`` whose sizes are 1 or equal to ``x``'s: full spatial
    (N, C, H, W), per sample and channel (N, C, 1, 1), per channel (1, C, 1, 1), and so on.
    """
    if t is None:
        return None
    t = _check_float_tensor_beside(t, x, name)
    if t.shape == x.shape:
        return t
    c = x.shape[1]
    if t.dim() == 1:
        if t.shape[0] != c:
            raise ValueError(f"{name} of shape (C,) must have C = {c} entries to match x, got shape {tuple(t.shape)}")
        return t.reshape((1, c) + (1,) * (x.dim() - 2))
    ok = t.dim() == x.dim() and all(s in (1, xs) for s, xs in zip(t.shape, x.shape, strict=True))
    if not ok:
        raise ValueError(
            f"{name} must have shape (C,) or a shape of rank {x.dim()} broadcastable to x's {tuple(x.shape)} "
            f"without enlarging it (e.g. {tuple(x.shape)}, {tuple(x.shape[:2]) + (1,) * (x.dim() - 2)}), "
            f"got {tuple(t.shape)}"
        )
    return t


def check_scale_shift(t: object, x: Tensor, name: str) -> Tensor | None:
    """A per-(n, c) or per-channel scale/shift (or ``None``) checked against ``x`` and returned as (N, C) or (1, C).

    Accepted: (C,), (N, C), (1, C), or a shape of x's rank with spatial sizes 1, such as (N, C, 1, 1).
    """
    if t is None:
        return None
    t = _check_float_tensor_beside(t, x, name)
    n, c = x.shape[:2]
    if t.dim() == 1 and t.shape[0] == c:
        return t.reshape(1, c)
    rank_ok = t.dim() == 2 or (t.dim() == x.dim() and all(size == 1 for size in t.shape[2:]))
    if rank_ok and t.shape[0] in (1, n) and t.shape[1] == c:
        return t.reshape(t.shape[0], c)
    raise ValueError(
        f"{name} must be per sample and channel or per channel, broadcastable to x's (N, C) = ({n}, {c}): shape "
        f"(C,), (N, C), (1, C) or {(n, c) + (1,) * (x.dim() - 2)}, got {tuple(t.shape)}"
    )


def check_table(table: object, name: str, x: Tensor) -> Tensor:
    """A (num_classes, C) floating-point class table on x's device."""
    if not isinstance(table, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (num_classes, C), got {type(table).__name__}")
    if not table.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {table.dtype}")
    if table.dim() != 2 or table.shape[1] != x.shape[1]:
        raise ValueError(
            f"{name} must have shape (num_classes, {x.shape[1]}) to match x's channels, got {tuple(table.shape)}"
        )
    if table.device != x.device:
        raise ValueError(f"{name} must be on x's device {x.device}, got {table.device}")
    return table


# Integer dtypes whose ids most operators take as they are; the wide unsigned ones (uint16, e.g. 16-bit PNG maps,
# uint32, uint64) have few kernels in torch and are widened to int64 once, at the edge.
_NARROW_INTEGERS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def check_integer_ids(ids: object, name: str) -> Tensor:
    """``ids`` as a tensor of integer ids: uint8 (as PNG label maps load), int8, int16, int32 and int64 as they are,
    the wide unsigned dtypes as int64; bool, floating-point and complex tensors raise ``TypeError``."""
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer class ids, got {type(ids).__name__}")
    if ids.dtype in _NARROW_INTEGERS:
        return ids
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class ids (an integer dtype such as torch.long), got {ids.dtype}")
    return ids.long()


def check_label_map(labels: object, num_classes: int, x: Tensor, name: str = "labels") -> Tensor:
    """An integer label map for ``x``: (N, *spatial) or (N, 1, *spatial), ids in [0, num_classes).

    ``spatial`` has ``x``'s spatial rank but any size (the map is resized to ``x`` later). Any integer dtype is
    accepted (see :func:`check_integer_ids`). Returns the map without its channel dimension. The id range is checked
    by :func:`check_label_range`.
    """
    labels = check_integer_ids(labels, name)
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
    check_label_range(labels, num_classes, name)
    return labels


def check_label_range(labels: Tensor, num_classes: int, name: str) -> None:
    """Class ids in [0, num_classes), checked without stalling an accelerator.

    On CPU tensors (where reading the range is free) a bad id raises a ``ValueError`` naming it. On other devices,
    and under ``torch.compile``, the check is a device-side assertion (``torch._assert_async``): it never waits for the
    device, and a bad id stops the program at the next synchronization with a device-side assertion error. Check once
    per batch on the host at the edge of your model for a readable message there (see the FAQ).
    """
    if labels.numel() == 0:
        return
    if labels.device.type != "cpu" or torch.compiler.is_compiling():
        in_range = ((labels >= 0) & (labels < num_classes)).all()
        torch._assert_async(in_range, f"{name} holds class ids outside [0, {num_classes})")
        return
    lo, hi = (int(v) for v in torch.aminmax(labels))
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{name} must hold class ids in [0, {num_classes}), got id {bad} (ids range over [{lo}, {hi}]); "
            "map 'don't care' ids such as 255 to a class of their own before calling"
        )


def check_extra_map(extra: object, labels: Tensor, label_nc: int, name: str = "extra") -> Tensor:
    """The float channels that follow the class channels of a label map (e.g. an instance-edge map) beside integer
    ``labels`` (N, \\*S): shape (N, E, \\*S) with 1 <= E < label_nc, on the labels' device."""
    if not isinstance(extra, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(extra).__name__}")
    if not extra.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (N, E, *spatial), got dtype {extra.dtype}")
    n, spatial = labels.shape[0], tuple(labels.shape[1:])
    if extra.dim() != labels.dim() + 1 or extra.shape[0] != n or tuple(extra.shape[2:]) != spatial:
        raise ValueError(
            f"{name} must have shape ({n}, E, {', '.join(map(str, spatial))}) (the label map's batch and spatial "
            f"size), got {tuple(extra.shape)}"
        )
    if not 1 <= extra.shape[1] < label_nc:
        raise ValueError(
            f"{name} must have between 1 and label_nc - 1 = {label_nc - 1} channels (the map's channels after the "
            f"classes), got {extra.shape[1]}"
        )
    if extra.device != labels.device:
        raise ValueError(f"{name} must be on the label map's device {labels.device}, got {extra.device}")
    return extra


def check_label_conv(
    labels: object, weight: object, bias: object, extra: object, padding_mode: object
) -> tuple[Tensor, Tensor | None]:
    """The arguments of :func:`spadenorm.functional.label_conv`: returns the (N, \\*S) ids and the extra map."""
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if not weight.is_floating_point():
        raise TypeError(f"weight must be a floating-point tensor, got dtype {weight.dtype}")
    if weight.dim() not in (3, 4, 5):
        raise ValueError(f"weight must have shape (O, K, *k) with 1 to 3 kernel dimensions, got {tuple(weight.shape)}")
    kernel = tuple(weight.shape[2:])
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(f"weight's kernel sizes must be odd (the output keeps the map's size), got {kernel}")
    if bias is not None:
        if not isinstance(bias, Tensor):
            raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
        if tuple(bias.shape) != (weight.shape[0],) or bias.dtype != weight.dtype or bias.device != weight.device:
            raise ValueError(
                f"bias must have shape ({weight.shape[0]},) and weight's dtype {weight.dtype} and device "
                f"{weight.device}, got shape {tuple(bias.shape)}, {bias.dtype} on {bias.device}"
            )
    check_choice(padding_mode, "padding_mode", ("zeros", "reflect", "replicate", "circular"))
    ids = check_integer_ids(labels, "labels")
    rank = weight.dim() - 2
    if ids.dim() == rank + 2 and ids.shape[1] == 1:
        ids = ids.squeeze(1)
    if ids.dim() != rank + 1:
        raise ValueError(
            f"labels must have shape (N, *spatial) or (N, 1, *spatial) with the weight's {rank} spatial "
            f"dimension(s), got {tuple(ids.shape)}"
        )
    if ids.device != weight.device:
        raise ValueError(f"labels must be on the weight's device {weight.device}, got {ids.device}")
    checked = None if extra is None else check_extra_map(extra, ids, weight.shape[1])
    check_label_range(ids, weight.shape[1] - (0 if checked is None else checked.shape[1]), "labels")
    return ids, checked
