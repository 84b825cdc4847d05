"""Functional normalize-and-modulate: validate arguments, then dispatch to the selected backend.

All functions take activations ``x`` of shape (N, C, *spatial) with 1 to 3 spatial dimensions (the docs write
(N, C, H, W)) in fp16, bf16, fp32 or fp64, in any memory format; the output keeps ``x``'s shape and memory format.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _eager, _validation
from ._backend import resolve_backend
from ._class_rows import class_rows
from ._validation import NormName

__all__ = ["adain", "class_modulated_norm", "modulated_norm"]


def _broadcastable(t: Tensor | None, x: Tensor, name: str) -> Tensor | None:
    if t is None:
        return None
    shape = _validation.modulation_shape(t, x, name)
    return t if t.dim() == len(shape) else t.reshape(shape)


def _validate_norm_args(
    x: Tensor,
    norm: object,
    num_groups: object,
    eps: object,
    running_mean: object,
    running_var: object,
    momentum: object,
    training: object,
    num_batches_tracked: object,
) -> tuple[str, int | None, float, float | None]:
    _validation.check_input(x)
    norm = _validation.check_norm(norm)
    num_groups = _validation.check_num_groups(norm, num_groups, x.shape[1])
    eps = _validation.check_eps(eps)
    momentum = _validation.check_momentum(momentum)
    if not isinstance(training, bool):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    _validation.check_running_stats(norm, running_mean, running_var, x.shape[1], training)
    if num_batches_tracked is not None and not isinstance(num_batches_tracked, Tensor):
        raise TypeError(f"num_batches_tracked must be a tensor or None, got {type(num_batches_tracked).__name__}")
    if momentum is None and training and running_mean is not None and num_batches_tracked is None:
        raise ValueError("momentum=None (cumulative moving average) needs num_batches_tracked, got None")
    _validation.check_batch_size(norm, x, training)
    return norm, num_groups, eps, momentum


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
    process_group: object = None,
    num_batches_tracked: Tensor | None = None,
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
        process_group: the ``torch.distributed`` group for ``"sync_batch"`` (``None``: the default group).
        num_batches_tracked: 0-d integer counter incremented in place when running statistics are updated.

    Returns:
        Tensor of x's shape and memory format, in the promoted dtype of x, gamma and beta.

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
    norm, num_groups, eps, momentum = _validate_norm_args(
        x, norm, num_groups, eps, running_mean, running_var, momentum, training, num_batches_tracked
    )
    gamma = _broadcastable(gamma, x, "gamma")
    beta = _broadcastable(beta, x, "beta")
    implementation = _eager.modulated_norm
    if resolve_backend(x) == "triton":
        from . import ops

        implementation = ops.modulated_norm
    return implementation(
        x,
        gamma,
        beta,
        norm=norm,
        num_groups=num_groups,
        eps=eps,
        running_mean=running_mean,
        running_var=running_var,
        momentum=momentum,
        training=training,
        process_group=process_group,
        num_batches_tracked=num_batches_tracked,
    )


def _check_table(table: object, name: str, x: Tensor) -> Tensor:
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


def resize_labels(labels: Tensor, size: tuple[int, ...]) -> Tensor:
    """Nearest-neighbour resize of an integer label map (N, *spatial) to ``size``; no-op when sizes match."""
    if tuple(labels.shape[1:]) == tuple(size):
        return labels
    resized = F.interpolate(labels.unsqueeze(1).float(), size=size, mode="nearest")
    return resized.squeeze(1).to(labels.dtype)


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
    process_group: object = None,
    num_batches_tracked: Tensor | None = None,
) -> Tensor:
    r"""Class-adaptive normalization (CLADE, Tan et al. 2020): :math:`y = \hat{x} \odot \gamma[l] + \beta[l]`.

    ``gamma[l]`` and ``beta[l]`` are the rows of (num_classes, C) tables picked per pixel by the label map ``l``,
    which is resized to x's spatial size with nearest-neighbour sampling. Unlike :func:`modulated_norm` the scale is
    ``gamma`` itself (CLADE's convention): initialise ``gamma_table`` to ones for an identity start. The statistics
    arguments are those of :func:`modulated_norm`.

    Args:
        x: activations (N, C, \*spatial).
        labels: integer class ids (N, \*spatial') or (N, 1, \*spatial'), each in [0, num_classes).
        gamma_table: (num_classes, C) per-class scales.
        beta_table: (num_classes, C) per-class shifts.

    Returns:
        Tensor of x's shape and memory format.

    Example:
        >>> import torch
        >>> from spadenorm.functional import class_modulated_norm
        >>> x = torch.randn(2, 4, 8, 8)
        >>> labels = torch.randint(0, 3, (2, 4, 4))  # resized to 8x8 inside
        >>> y = class_modulated_norm(x, labels, torch.ones(3, 4), torch.zeros(3, 4))
        >>> torch.allclose(y, torch.nn.functional.instance_norm(x), atol=1e-5)
        True
    """
    _validation.check_input(x)
    gamma_table = _check_table(gamma_table, "gamma_table", x)
    beta_table = _check_table(beta_table, "beta_table", x)
    if beta_table.shape != gamma_table.shape:
        raise ValueError(
            f"beta_table must have gamma_table's shape {tuple(gamma_table.shape)}, got {tuple(beta_table.shape)}"
        )
    labels = _validation.check_label_map(labels, gamma_table.shape[0], x, "labels")
    labels = resize_labels(labels, tuple(x.shape[2:]))
    kwargs = {
        "norm": norm,
        "num_groups": num_groups,
        "eps": eps,
        "running_mean": running_mean,
        "running_var": running_var,
        "momentum": momentum,
        "training": training,
        "process_group": process_group,
        "num_batches_tracked": num_batches_tracked,
    }
    if resolve_backend(x) == "triton":  # the kernel gathers the table rows itself
        from . import ops

        norm, num_groups, eps, momentum = _validate_norm_args(
            x, norm, num_groups, eps, running_mean, running_var, momentum, training, num_batches_tracked
        )
        kwargs.update(norm=norm, num_groups=num_groups, eps=eps, momentum=momentum)
        return ops.class_modulated_norm(x, labels, gamma_table, beta_table, **kwargs)
    # Per-pixel rows as (N, *spatial, C), viewed channels-first: (N, C, *spatial) without a copy.
    gamma = class_rows(gamma_table - 1, labels).movedim(-1, 1)  # modulated_norm scales by 1 + gamma
    beta = class_rows(beta_table, labels).movedim(-1, 1)
    return modulated_norm(x, gamma, beta, **kwargs)


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

    Example:
        >>> import torch
        >>> from spadenorm.functional import adain
        >>> content, style = torch.randn(1, 3, 16, 16), 5 + 2 * torch.randn(1, 3, 8, 8)
        >>> y = adain(content, style)
        >>> torch.allclose(y.mean((2, 3)), style.mean((2, 3)), atol=1e-4)
        True
    """
    _validation.check_input(content, "content")
    _validation.check_input(style, "style")
    eps = _validation.check_eps(eps)
    if (
        style.dim() != content.dim()
        or style.shape[1] != content.shape[1]
        or style.shape[0] not in (1, content.shape[0])
    ):
        raise ValueError(
            f"style must have shape ({content.shape[0]} or 1, {content.shape[1]}, ...) with content's rank "
            f"{content.dim()}, got {tuple(style.shape)}"
        )
    _validation.check_batch_size("instance", style, training=True)
    var, mean = torch.var_mean(style, dim=tuple(range(2, style.dim())), correction=0, keepdim=True)
    return modulated_norm(content, torch.sqrt(var + eps) - 1, mean, norm="instance", eps=eps)
