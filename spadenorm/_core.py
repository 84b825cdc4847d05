r"""What both backends share: the norm vocabulary, the resolved argument specs, dtype rules and running statistics.

Arguments are checked once, at the edge (:mod:`spadenorm.functional` or a module's ``forward``), and resolved into
the small frozen objects below; both backends receive them through one signature,
``modulated_norm(x, mod, spec, running, training)``, and compute

.. math::
    y = \bigl(\hat{x} \odot (1 + \gamma) + \beta\bigr) \odot (1 + s) + t

=============  =====================================  ============================
norm           one reduction set S                     statistics per call (flat)
=============  =====================================  ============================
``instance``   (H, W) of one (n, c)                    N * C
``group``      (C/G, H, W) of one (n, group)           N * G
``layer``      (C, H, W) of one n                      N
``batch``      (N, H, W) of one c                      C
=============  =====================================  ============================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, get_args

import torch
from torch import Tensor

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

NormName = Literal["instance", "batch", "sync_batch", "group", "layer", "none"]
"""The statistics of the parameter-free norm."""

NORMS: tuple[str, ...] = get_args(NormName)
BATCH_NORMS: tuple[str, ...] = ("batch", "sync_batch")
"""Per-channel statistics over (N, spatial), with running estimates."""
PER_SAMPLE_NORMS: tuple[str, ...] = ("instance", "group", "layer")
"""Statistics per sample: never running estimates, never synchronized."""


class Modulation(NamedTuple):
    """What modulates the normalized input: ``(x_hat * (1 + gamma) + beta) * (1 + scale) + shift``.

    Attributes:
        gamma: ``None``, a tensor of x's rank whose sizes are 1 or x's (full map, per (n, c), per channel), or, with
            ``labels``, a (K, C) class table in the same ``1 + gamma`` convention.
        beta: as ``gamma``.
        labels: ``None``, or (N, *spatial) integer class ids at x's spatial size, in [0, K).
        scale: ``None`` or (N, C) / (1, C): the second modulation's scale offset, per (n, c) or per channel.
        shift: ``None`` or (N, C) / (1, C).
    """

    gamma: Tensor | None = None
    beta: Tensor | None = None
    labels: Tensor | None = None
    scale: Tensor | None = None
    shift: Tensor | None = None


@dataclass(frozen=True)
class NormSpec:
    """The statistics to normalize with, resolved and validated.

    Attributes:
        norm: one of :data:`NORMS`.
        num_groups: G for ``"group"``, else ``None``.
        eps: added to the variance before the square root.
        process_group: the ``torch.distributed`` group of ``"sync_batch"`` (``None``: the default group).
    """

    norm: NormName
    num_groups: int | None = None
    eps: float = 1e-5
    process_group: ProcessGroup | None = None

    @property
    def is_batch(self) -> bool:
        """Per-channel statistics over the batch (``"batch"``, ``"sync_batch"``)."""
        return self.norm in BATCH_NORMS

    def groups_per_sample(self, num_channels: int) -> int:
        """G, the statistics per sample of a per-sample norm: C (instance), ``num_groups`` (group), 1 (layer)."""
        if self.norm == "instance":
            return num_channels
        if self.norm == "group" and self.num_groups is not None:
            return self.num_groups
        if self.norm == "layer":
            return 1
        raise ValueError(f"groups_per_sample needs a per-sample norm {PER_SAMPLE_NORMS}, got norm={self.norm!r}")

    def set_size(self, x: Tensor) -> int:
        """M, the number of elements of ``x`` in one reduction set (local to this process)."""
        spatial = math.prod(x.shape[2:])
        if self.is_batch:
            return x.shape[0] * spatial
        return x.shape[1] // self.groups_per_sample(x.shape[1]) * spatial

    def uses_batch_statistics(self, training: bool) -> bool:
        """Whether the statistics come from x (so depend on it in backward) rather than running estimates."""
        return self.norm != "none" and (training or not self.is_batch)


@dataclass(frozen=True)
class RunningStats:
    """The running estimates of a batch norm, as ``torch.nn.BatchNorm2d`` keeps them (updated in place).

    Attributes:
        mean: (C,) running mean.
        var: (C,) running unbiased variance.
        momentum: the update factor, or ``None`` for a cumulative average over ``num_batches_tracked`` batches.
        num_batches_tracked: 0-d integer counter, or ``None`` (then ``momentum`` is a number).
    """

    mean: Tensor
    var: Tensor
    momentum: float | None = 0.1
    num_batches_tracked: Tensor | None = None

    def count_batch(self) -> float | Tensor:
        """Count this batch in ``num_batches_tracked`` and return the update factor, as ``torch.nn.BatchNorm``.

        ``momentum=None`` gives the cumulative-average factor ``1 / num_batches_tracked``, computed in the running
        statistics' dtype and returned as a 0-d tensor, so that ``torch.compile`` needs no host read.
        """
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        if self.momentum is not None:
            return self.momentum
        if self.num_batches_tracked is None:
            raise ValueError("momentum=None (cumulative moving average) needs num_batches_tracked, got None")
        return self.num_batches_tracked.to(self.mean.dtype).reciprocal()

    def update(self, mean: Tensor, var: Tensor, count: int | Tensor, factor: float | Tensor) -> None:
        """``running = (1 - factor) * running + factor * batch``, with the unbiased variance of ``count`` values.

        ``count`` may be a 0-d tensor (the total over processes of sync-batch), read on its device, never on the host.
        """
        if isinstance(count, Tensor):
            unbiased = var * (count / (count - 1).clamp(min=1))
        else:
            unbiased = var * (count / (count - 1)) if count > 1 else var
        self.mean.lerp_(mean.to(self.mean.dtype), factor)
        self.var.lerp_(unbiased.to(self.var.dtype), factor)


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """fp64 when any operand is fp64, else fp32: the dtype of statistics and arithmetic."""
    for t in tensors:
        if t is not None and t.dtype is torch.float64:
            return torch.float64
    return torch.float32


def result_dtype(*tensors: Tensor | None) -> torch.dtype:
    """Torch's type promotion over the operands, as the original ``norm(x) * (1 + gamma) + beta`` would give."""
    out: torch.dtype | None = None
    for t in tensors:
        if t is not None:
            out = t.dtype if out is None or t.dtype is out else torch.promote_types(out, t.dtype)
    assert out is not None, "result_dtype needs at least one tensor"
    return out


def normalized_dtype_under_autocast(x: Tensor, spec: NormSpec) -> torch.dtype:
    """The dtype torch's own norm of this kind returns for x in the current autocast region.

    Under CUDA autocast, ``group_norm`` and ``layer_norm`` run in float32 (they are on autocast's float32 list), so
    the original formulation ``norm(x) * (1 + gamma) + beta`` yields float32; instance and batch norm, and every norm
    under CPU autocast, keep x's dtype.
    """
    low = x.dtype in (torch.float16, torch.bfloat16)
    if low and spec.norm in ("group", "layer") and x.device.type == "cuda" and torch.is_autocast_enabled("cuda"):
        return torch.float32
    return x.dtype


def is_spatial(t: Tensor) -> bool:
    """Whether a modulation tensor varies over the spatial dimensions (its gradient is then a full map)."""
    return any(size != 1 for size in t.shape[2:])


def modulate_empty(x: Tensor, mod: Modulation) -> Tensor:
    """The op on an x with a zero-sized dimension (an empty batch, say), as torch's norms treat one.

    No statistic is taken: the result is the (empty) formula ``(x * (1 + gamma) + beta) * (1 + scale) + shift``
    broadcast as usual, so that it has x's shape and the promoted dtype, and every modulation tensor that needs a
    gradient gets one, zero where it has elements (a sum over no position), as torch gives its norms' weight and bias.
    """
    gamma, beta, labels, scale, shift = mod
    if labels is not None:  # (K, C) tables: rows per position, channels-first
        ids = labels.long()
        gamma = None if gamma is None else gamma[ids].movedim(-1, 1)
        beta = None if beta is None else beta[ids].movedim(-1, 1)
    spatial = (1,) * (x.dim() - 2)
    y = x if gamma is None else x * (1 + gamma)
    y = y if beta is None else y + beta
    y = y if scale is None else y * (1 + scale.view(*scale.shape, *spatial))
    y = y if shift is None else y + shift.view(*shift.shape, *spatial)
    return y if y is not x else x.clone()
