"""Functional normalize-and-modulate: check the arguments once, resolve them, run the backend chosen for this call.

All functions take activations ``x`` of shape (N, C, *spatial) with 1 to 3 spatial dimensions (the docs write
(N, C, H, W)) in fp16, bf16, fp32 or fp64, in any memory format; the output keeps ``x``'s shape and memory format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _backend, _validation
from ._core import Modulation, NormName, NormSpec, RunningStats
from .label_conv import label_conv as _label_conv

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["NormName", "adain", "class_modulated_norm", "label_conv", "modulated_norm", "resize_labels"]


def _resolve_statistics(
    x: Tensor,
    norm: object,
    num_groups: object,
    eps: object,
    running_mean: object,
    running_var: object,
    momentum: object,
    training: object,
    process_group: object,
    num_batches_tracked: object,
) -> tuple[NormSpec, RunningStats | None, bool]:
    """Check x and the statistics arguments; resolve them into ``(spec, running, training)``."""
    _validation.check_input(x)
    training = _validation.check_bool(training, "training")
    spec = _validation.norm_spec(norm, num_groups, eps, x.shape[1], process_group)
    running = _validation.running_stats(
        spec, running_mean, running_var, momentum, num_batches_tracked, x.shape[1], training
    )
    _validation.check_batch_size(spec, x, training)
    return spec, running, training


def modulated_norm(
    x: Tensor,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    *,
    norm: NormName = "instance",
    num_groups: int | None = None,
    eps: float = 1e-5,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    momentum: float | None = 0.1,
    training: bool = True,
    process_group: ProcessGroup | None = None,
    num_batches_tracked: Tensor | None = None,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
) -> Tensor:
    r"""Normalize ``x``, then modulate it: :math:`y = \hat{x} \odot (1 + \gamma) + \beta`.

    .. math::
        \hat{x} = \frac{x - \mu_S}{\sqrt{\sigma^2_S + \epsilon}}

    with :math:`\mu_S, \sigma^2_S` the mean and biased variance over the reduction set S chosen by ``norm``:

    * ``"instance"``: per (n, c) over the spatial positions;
    * ``"batch"``: per c over (N, spatial), with running statistics exactly as :func:`torch.nn.functional.batch_norm`;
    * ``"sync_batch"``: ``"batch"`` with statistics (and their gradients) reduced over ``process_group`` when
      ``torch.distributed`` is initialized with more than one process and ``training`` is true;
    * ``"group"``: per (n, group of C / ``num_groups`` channels) over (channels of the group, spatial);
    * ``"layer"``: per n over (C, spatial) (GroupNorm with one group, *not* ``F.layer_norm`` over the last dims);
    * ``"none"``: :math:`\hat{x} = x`.

    A second, per-(n, c) modulation, such as a diffusion model's timestep scale and shift, runs in the same pass:
    :math:`y = (\hat{x} \odot (1 + \gamma) + \beta) \odot (1 + s) + t`.

    Args:
        x: activations (N, C, \*spatial), floating point.
        gamma: scale offset, ``None`` or broadcastable to x without enlarging it: full spatial (N, C, H, W) as in
            SPADE, per sample and channel (N, C, 1, 1) as in AdaIN and conditional BN, per channel (C,) or
            (1, C, 1, 1). The layer scales by ``1 + gamma``, so zero gamma leaves the normalized input unchanged.
        beta: shift, same shapes as ``gamma``.
        norm: the statistics, one of ``"instance"``, ``"batch"``, ``"sync_batch"``, ``"group"``, ``"layer"``,
            ``"none"``.
        num_groups: number of groups for ``norm="group"`` (must divide C); must be ``None`` otherwise.
        eps: added to the variance before the square root, >= 0.
        running_mean: (C,) running mean for batch norms, updated in place in training; ``None`` for none.
        running_var: (C,) running (unbiased) variance, as ``running_mean``.
        momentum: running-statistics factor; ``None`` for a cumulative average (needs ``num_batches_tracked``).
        training: batch statistics (True) or the running statistics (False, batch norms only).
        process_group: the ``torch.distributed`` group for ``"sync_batch"`` (``None``: the default group); must be
            ``None`` for the other norms.
        num_batches_tracked: 0-d integer counter incremented in place when running statistics are updated.
        scale: ``None`` or the second modulation's scale offset s, per sample and channel (N, C) or per channel (C,)
            (also (1, C) or x's rank with spatial sizes 1); the output is scaled by ``1 + s``.
        shift: ``None`` or the second modulation's shift t, same shapes as ``scale``.

    Returns:
        Tensor of x's shape and memory format, in the promoted dtype of x, gamma, beta, scale and shift.

    Raises:
        TypeError, ValueError: for invalid arguments, before any computation.

    Example:
        >>> import torch
        >>> from spadenorm.functional import modulated_norm
        >>> x = torch.randn(2, 8, 16, 16)
        >>> gamma, beta = torch.randn(2, 8, 16, 16), torch.randn(2, 8, 16, 16)
        >>> y = modulated_norm(x, gamma, beta, norm="instance")
        >>> y.shape
        torch.Size([2, 8, 16, 16])
        >>> expected = torch.nn.functional.instance_norm(x) * (1 + gamma) + beta
        >>> torch.allclose(y, expected, atol=1e-5)
        True
    """
    spec, running, training = _resolve_statistics(
        x, norm, num_groups, eps, running_mean, running_var, momentum, training, process_group, num_batches_tracked
    )
    mod = Modulation(
        _validation.check_modulation(gamma, x, "gamma"),
        _validation.check_modulation(beta, x, "beta"),
        None,
        _validation.check_scale_shift(scale, x, "scale"),
        _validation.check_scale_shift(shift, x, "shift"),
    )
    return _backend.modulated_norm(x, mod, spec, running, training)


def resize_labels(labels: Tensor, size: tuple[int, ...]) -> Tensor:
    """Nearest-neighbour resize of an integer label map (N, \\*spatial) to ``size``; no-op when the sizes match.

    Position ``i`` of the result reads the source position ``F.interpolate(..., mode="nearest")`` reads, so the map
    stays aligned with float maps resized by torch; the ids are gathered, never converted, so every integer dtype
    keeps its values and dtype (the wide unsigned dtypes come back as int64).

    Example:
        >>> import torch
        >>> resize_labels(torch.tensor([[[0, 1], [2, 3]]], dtype=torch.uint8), (4, 4))[0, :, 0]
        tensor([0, 0, 2, 2], dtype=torch.uint8)
    """
    labels = _validation.check_integer_ids(labels, "labels")
    if not isinstance(size, (tuple, list)) or not all(isinstance(s, int) for s in size):
        raise TypeError(f"size must be a tuple of ints, got {size!r}")
    if labels.dim() != len(size) + 1:
        raise ValueError(
            f"labels must have shape (N, *spatial) with {len(size)} spatial dims to match size {tuple(size)}, "
            f"got {tuple(labels.shape)}"
        )
    if tuple(labels.shape[1:]) == tuple(size):
        return labels
    rank = len(size)
    index: list[Tensor | slice] = [slice(None)]
    for dim, (source, target) in enumerate(zip(labels.shape[1:], size, strict=True)):
        shape = [1] * rank
        shape[dim] = target
        index.append(_nearest_source(source, target, labels.device).view(shape))
    return labels[tuple(index)]


def label_conv(
    labels: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    extra: Tensor | None = None,
    padding_mode: str = "zeros",
    channels_last: bool = False,
) -> Tensor:
    r"""The convolution of a one-hot label map, computed by table lookups: equal to
    ``F.conv{1,2,3}d(cat([one_hot(labels), extra], 1), weight, bias, padding=k // 2)`` without building the map.

    A one-hot map selects one input channel of the weight per kernel tap, so for ids l in [0, K),

    .. math::

        \mathrm{conv}(e(l), W, b)[n, o, p] = b[o] + \sum_t W[o, \, l(n, p + t - \lfloor k/2 \rfloor), \, t]

    with no term for taps outside the map (other padding modes pad the ids as the convolution pads the map). The first
    K = ``weight.shape[1] - E`` input channels of the weight are looked up; the E channels of ``extra`` (such as an
    instance-edge map) go through an ordinary convolution with the remaining ones. The backward scatters the gradient
    into the rows the labels selected; see the module ``spadenorm.label_conv``. Under autocast the weight is cast to the
    autocast dtype, as ``F.conv*d`` casts it.

    Args:
        labels: integer class ids (N, \*spatial) or (N, 1, \*spatial), any integer dtype, each in [0, K).
        weight: (O, K + E, \*k) with odd kernel sizes, 1 to 3 spatial dimensions (those of ``labels``).
        bias: (O,) or ``None``.
        extra: ``None`` or floating-point (N, E, \*spatial): the input channels after the classes.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``, as ``nn.Conv*d``'s.
        channels_last: return the result channels last in memory, (N, \*spatial, O), the order the lookup
            computes it in (no transposing copy); else contiguous.

    Returns:
        (N, O, \*spatial) in the weight's dtype.

    Raises:
        TypeError, ValueError: for invalid arguments, before any computation.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from spadenorm.functional import label_conv
        >>> labels = torch.randint(0, 5, (2, 16, 16))
        >>> weight, bias = torch.randn(8, 5, 3, 3), torch.randn(8)
        >>> one_hot = F.one_hot(labels, 5).movedim(-1, 1).float()
        >>> torch.allclose(label_conv(labels, weight, bias), F.conv2d(one_hot, weight, bias, padding=1), atol=1e-5)
        True
    """
    ids, extra = _validation.check_label_conv(labels, weight, bias, extra, padding_mode)
    _validation.check_bool(channels_last, "channels_last")
    return _label_conv(ids, weight, bias, extra, padding_mode, channels_last)


def _nearest_source(source: int, target: int, device: torch.device) -> Tensor:
    """(target,) int64 source positions of a nearest-neighbour resize along one dimension, as torch computes them."""
    positions = torch.arange(source, dtype=torch.float32, device=device).view(1, 1, source)
    return F.interpolate(positions, size=(target,), mode="nearest").view(target).long()


def class_modulated_norm(
    x: Tensor,
    labels: Tensor,
    gamma_table: Tensor,
    beta_table: Tensor,
    *,
    norm: NormName = "instance",
    num_groups: int | None = None,
    eps: float = 1e-5,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    momentum: float | None = 0.1,
    training: bool = True,
    process_group: ProcessGroup | None = None,
    num_batches_tracked: Tensor | None = None,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
) -> Tensor:
    r"""Class-adaptive normalization (CLADE, Tan et al. 2020): :math:`y = \hat{x} \odot \gamma[l] + \beta[l]`.

    ``gamma[l]`` and ``beta[l]`` are the rows of (num_classes, C) tables picked per pixel by the label map ``l``,
    which is resized to x's spatial size with nearest-neighbour sampling. Unlike :func:`modulated_norm` the scale is
    ``gamma`` itself (CLADE's convention): initialise ``gamma_table`` to ones for an identity start. The statistics
    arguments and the second modulation (``scale``, ``shift``) are those of :func:`modulated_norm`:
    :math:`y = (\hat{x} \odot \gamma[l] + \beta[l]) \odot (1 + s) + t`.

    Args:
        x: activations (N, C, \*spatial).
        labels: integer class ids (N, \*spatial') or (N, 1, \*spatial'), each in [0, num_classes).
        gamma_table: (num_classes, C) per-class scales.
        beta_table: (num_classes, C) per-class shifts.
        norm: the statistics, as in :func:`modulated_norm`.
        num_groups: as in :func:`modulated_norm`.
        eps: as in :func:`modulated_norm`.
        running_mean: as in :func:`modulated_norm`.
        running_var: as in :func:`modulated_norm`.
        momentum: as in :func:`modulated_norm`.
        training: as in :func:`modulated_norm`.
        process_group: as in :func:`modulated_norm`.
        num_batches_tracked: as in :func:`modulated_norm`.
        scale: as in :func:`modulated_norm`.
        shift: as in :func:`modulated_norm`.

    Returns:
        Tensor of x's shape and memory format.

    Raises:
        TypeError, ValueError: for invalid arguments, before any computation.

    Example:
        >>> import torch
        >>> from spadenorm.functional import class_modulated_norm
        >>> x = torch.randn(2, 4, 8, 8)
        >>> labels = torch.randint(0, 3, (2, 4, 4))  # resized to 8x8 inside
        >>> y = class_modulated_norm(x, labels, torch.ones(3, 4), torch.zeros(3, 4))
        >>> torch.allclose(y, torch.nn.functional.instance_norm(x), atol=1e-5)
        True
    """
    spec, running, training = _resolve_statistics(
        x, norm, num_groups, eps, running_mean, running_var, momentum, training, process_group, num_batches_tracked
    )
    gamma_table = _validation.check_table(gamma_table, "gamma_table", x)
    beta_table = _validation.check_table(beta_table, "beta_table", x)
    if beta_table.shape != gamma_table.shape:
        raise ValueError(
            f"beta_table must have gamma_table's shape {tuple(gamma_table.shape)}, got {tuple(beta_table.shape)}"
        )
    scale = _validation.check_scale_shift(scale, x, "scale")
    shift = _validation.check_scale_shift(shift, x, "shift")
    return _class_modulated(x, labels, gamma_table, beta_table, scale, shift, spec, running, training)


def _class_modulated(
    x: Tensor,
    labels: object,
    gamma_table: Tensor,
    beta_table: Tensor,
    scale: Tensor | None,
    shift: Tensor | None,
    spec: NormSpec,
    running: RunningStats | None,
    training: bool,
) -> Tensor:
    """CLADE on checked x, tables, second modulation and statistics: check and resize ``labels``, run the backend."""
    ids = _validation.check_label_map(labels, gamma_table.shape[0], x, "labels")
    ids = resize_labels(ids, tuple(x.shape[2:]))
    # The backends scale by 1 + gamma: CLADE's scale table is offset here, once.
    mod = Modulation(gamma_table - 1, beta_table, ids, scale, shift)
    return _backend.modulated_norm(x, mod, spec, running, training)


def adain(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    r"""Adaptive instance normalization (Huang and Belongie 2017) from a style feature map.

    .. math::
        \mathrm{AdaIN}(x, s) = \sigma_s \frac{x - \mu_x}{\sigma_x} + \mu_s, \qquad
        \sigma = \sqrt{\mathrm{Var}_{HW} + \epsilon}

    per (n, c), with biased variances for both content and style. This is :func:`modulated_norm` with instance
    statistics, ``gamma = sigma_s - 1`` and ``beta = mu_s``; gradients flow into both inputs.

    Args:
        content: (N, C, \*spatial) features to restyle.
        style: (N, C, \*spatial') or (1, C, \*spatial') features whose statistics are imposed; sizes may differ
            from the content's.
        eps: added to both variances, >= 0.

    Returns:
        Tensor of content's shape.

    Raises:
        TypeError, ValueError: for invalid arguments, before any computation.

    Example:
        >>> import torch
        >>> from spadenorm.functional import adain
        >>> content, style = torch.randn(1, 3, 16, 16), 5 + 2 * torch.randn(1, 3, 8, 8)
        >>> y = adain(content, style)
        >>> torch.allclose(y.mean((2, 3)), style.mean((2, 3)), atol=1e-4)
        True
    """
    _validation.check_input(content, "content")
    spec = NormSpec("instance", eps=_validation.check_eps(eps))
    gamma, beta = _style_modulation(content, style, spec)
    _validation.check_batch_size(spec, content, training=True)
    return _backend.modulated_norm(content, Modulation(gamma, beta), spec, None, True)


def _style_modulation(content: Tensor, style: Tensor, spec: NormSpec) -> tuple[Tensor, Tensor]:
    """Check a style feature map against the content; AdaIN's ``(gamma, beta) = (sigma_s - 1, mu_s)``."""
    _validation.check_input(style, "style")
    if (
        style.dim() != content.dim()
        or style.shape[1] != content.shape[1]
        or style.shape[0] not in (1, content.shape[0])
    ):
        raise ValueError(
            f"style must have shape ({content.shape[0]} or 1, {content.shape[1]}, ...) with content's rank "
            f"{content.dim()}, got {tuple(style.shape)}"
        )
    if style.device != content.device:
        raise ValueError(f"style must be on content's device {content.device}, got {style.device}")
    _validation.check_batch_size(spec, style, training=True)
    var, mean = torch.var_mean(style, dim=tuple(range(2, style.dim())), correction=0, keepdim=True)
    return torch.sqrt(var + spec.eps) - 1, mean
