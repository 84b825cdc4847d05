r"""The convolution of a one-hot label map, computed as sums of weight rows picked by the labels.

For integer labels :math:`l` of shape (N, \*S) with ids in [0, K), their one-hot map :math:`e(l)` (N, K, \*S), and a
convolution weight :math:`W` (O, K, \*k) with odd kernel sizes, stride 1 and padding ``k // 2`` (the output keeps S),
the one-hot map selects one column of the weight per kernel tap:

.. math::

    \mathrm{conv}(e(l), W, b)[n, o, p] = b[o] + \sum_{t} W[o, \, l(n, p + t - \lfloor k/2 \rfloor), \, t]

summed over the taps t of the kernel, with no term for a tap outside the map (zero padding). The other padding modes
pad the labels the same way the convolution pads the one-hot map (reflect, replicate, circular), since padding
commutes with one-hot encoding. Nothing multiplies by zero: per output value the sum reads ``taps`` weights instead
of ``K * taps``, and the (N, K, \*S) one-hot map is never built.

Forward. The weight becomes a table of ``taps * (K + 1)`` rows of length O, row ``t * (K + 1) + c`` holding
:math:`W[:, c, t]`, row ``t * (K + 1) + K`` zero (the id the padding gets under zero padding), the bias added to the
centre tap's rows (the centre tap always reads a real label). Each output position is one bag of ``taps`` row
indices, and ``F.embedding_bag(mode="sum")`` gathers and sums them: (N * prod(S), O) rows, a chunk of positions at
a time on CPU, each chunk copied into the (N, O, \*S) result while it is in cache (transposed for a contiguous
result; as it is for a channels-last one); on other devices in one gather and one copy.

Backward. :math:`\partial L / \partial b = \sum_p G[p]` and

.. math::

    \frac{\partial L}{\partial W[o, c, t]} = \sum_{p \,:\, l_{pad}(p + t) = c} G[n, o, p]

the gradient G scattered into the rows its positions selected. With the padded map's positions q sorted by their id,
the positions of class c form one contiguous run, and the sum for (c, t) is one bag over the gradient rows
``p = q - t`` of that run, with weight 0 where p falls outside the map: one ``F.embedding_bag`` over
``taps * prod(S_pad)`` entries, like the forward's. The bias gradient is the sum of the centre tap's bags. The
backward is linear in G and its adjoint is the forward, so it is differentiable in turn (double backward).

Shapes: labels (N, \*S) of any integer dtype (ids in [0, K) are the caller's to check), weight (O, K, \*k) with one
to three spatial dimensions, bias (O,) or ``None``; output (N, O, \*S) in the weight's dtype. Both passes are
registered as ``torch.library`` custom ops (``spadenorm::label_conv``, ``spadenorm::label_conv_backward``) with fake
implementations, so ``torch.compile(fullgraph=True)`` runs them as they are.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PADDING_MODES", "label_conv"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
"""The padding modes of ``torch.nn.Conv*d``; each pads the labels as the convolution would pad the one-hot map."""

_INT32_MAX = 2**31 - 1


def _index_dtype(*bounds: int) -> torch.dtype:
    """int32 indices where every index fits (half the bytes of int64), else int64."""
    return torch.int32 if max(bounds) <= _INT32_MAX else torch.int64


def _source_positions(size: int, pad: int, mode: str, device: torch.device) -> Tensor:
    """Positions ``-pad .. size + pad - 1`` mapped to the position they copy under ``mode`` (int64)."""
    positions = torch.arange(-pad, size + pad, device=device)
    if mode == "reflect":
        if pad >= size:
            raise ValueError(f"padding_mode 'reflect' needs padding < the input size, got padding {pad} for {size}")
        positions = positions.abs()
        return torch.where(positions >= size, 2 * (size - 1) - positions, positions)
    if mode == "replicate":
        return positions.clamp(0, size - 1)
    if pad > size:  # circular
        raise ValueError(f"padding_mode 'circular' needs padding <= the input size, got padding {pad} for {size}")
    return positions.remainder(size)


def _padded_labels(labels: Tensor, pads: list[int], mode: str, sentinel: int, dtype: torch.dtype) -> Tensor:
    """(N, \\*S) labels as ``dtype``, padded by ``pads`` per spatial dimension: with ``sentinel`` for ``"zeros"``,
    else with the labels the padding mode copies."""
    labels = labels.to(dtype)
    if mode == "zeros":
        return F.pad(labels, [p for pad in reversed(pads) for p in (pad, pad)], value=sentinel)
    rank = len(pads)
    index: list[Tensor | slice] = [slice(None)]
    for dim, (size, pad) in enumerate(zip(labels.shape[1:], pads, strict=True)):
        shape = [1] * rank
        shape[dim] = size + 2 * pad
        index.append(_source_positions(size, pad, mode, labels.device).view(shape))
    return labels[tuple(index)]


def _tap_offsets(kernel_size: list[int], device: torch.device) -> list[Tensor]:
    """Per spatial dimension, the (taps,) offset of each tap along it, taps in the weight's (\\*k) order."""
    grids = torch.meshgrid(*(torch.arange(k, device=device) for k in kernel_size), indexing="ij")
    return [g.reshape(-1) for g in grids]


# Positions per gather: the (positions, O) rows of one chunk stay in cache until they are copied into the result,
# and no activation-sized buffer of rows is allocated besides the result (on CPU a fresh buffer of that size costs
# about as much in page faults as the gather itself). About 1 MiB of fp32 rows.
_CHUNK_ELEMENTS = 2**18
_CHUNKED_DEVICES = ("cpu",)
"""Device types gathered in chunks; elsewhere one gather and one copy (on an accelerator a launch costs more)."""


def _gather(bags: Tensor, table: Tensor, n: int, spatial: list[int], channels_last: bool) -> Tensor:
    """The bags' sums of table rows as an (N, O, \\*S) tensor, channels last in memory or contiguous.

    On CPU, gathered a chunk of positions at a time, each chunk's (positions, O) rows copied into place while in
    cache (transposed for a contiguous result: ``copy_``'s fast path for a transposed matrix); on other devices in one
    gather and one copy. The result is allocated in its final layout and returned as it is, not as a view, so that
    callers may modify it in place.
    """
    out_channels = table.shape[1]
    positions = math.prod(spatial)
    shape = (n, out_channels, *spatial)
    if channels_last:  # (N, *S, O) in memory
        strides = [out_channels * math.prod(spatial[i + 1 :]) for i in range(len(spatial))]
        out = torch.empty_strided(
            shape, (out_channels * positions, 1, *strides), dtype=table.dtype, device=table.device
        )
        targets = out.movedim(1, -1).view(n, positions, out_channels)
    else:
        out = table.new_empty(shape)
        targets = out.view(n, out_channels, positions).transpose(1, 2)
    if table.device.type not in _CHUNKED_DEVICES:
        rows = F.embedding_bag(bags, table, mode="sum")
        targets.copy_(rows.view(n, positions, out_channels))
        return out
    chunk = max(1, _CHUNK_ELEMENTS // max(out_channels, 1))
    for sample_bags, target in zip(bags.view(n, positions, -1), targets, strict=True):
        for start in range(0, positions, chunk):
            target[start : start + chunk].copy_(F.embedding_bag(sample_bags[start : start + chunk], table, mode="sum"))
    return out


def _position_rows(t: Tensor) -> Tensor:
    """(N, C, \\*S) -> contiguous (N * prod(S), C) rows: a view of a channels-last tensor, else per-sample 2-D
    transposes."""
    n, channels = t.shape[:2]
    moved = t.movedim(1, -1)
    if moved.is_contiguous():
        return moved.view(-1, channels)
    rows = t.new_empty((n, t.numel() // max(n * channels, 1), channels))
    for sample, block in zip(rows, t.reshape(n, channels, -1), strict=True):
        sample.copy_(block.t())
    return rows.view(-1, channels)


@torch.library.custom_op("spadenorm::label_conv", mutates_args=())
def _label_conv(labels: Tensor, weight: Tensor, bias: Tensor | None, padding_mode: str, channels_last: bool) -> Tensor:
    """``conv(one_hot(labels), weight, bias)`` by table lookups: (N, \\*S) ids, (O, K, \\*k) -> (N, O, \\*S),
    channels last in memory or contiguous."""
    out_channels, num_classes = weight.shape[:2]
    kernel_size = list(weight.shape[2:])
    taps = math.prod(kernel_size)
    n, spatial = labels.shape[0], list(labels.shape[1:])
    if n * math.prod(spatial) * out_channels == 0:
        return _label_conv_fake(labels, weight, bias, padding_mode, channels_last)
    dtype = _index_dtype(taps * (num_classes + 1))
    padded = _padded_labels(labels, [k // 2 for k in kernel_size], padding_mode, num_classes, dtype)
    for dim, k in enumerate(kernel_size):
        padded = padded.unfold(1 + dim, k, 1)  # (N, *S, k_1, .., k_dim)
    first_row = torch.arange(taps, dtype=dtype, device=labels.device) * (num_classes + 1)
    bags = (padded + first_row.view(kernel_size)).reshape(-1, taps)  # (N * prod(S), taps) row indices
    table = weight.new_zeros(taps, num_classes + 1, out_channels)
    table[:, :num_classes] = weight.reshape(out_channels, num_classes, taps).permute(2, 1, 0)
    if bias is not None:
        table[taps // 2, :num_classes] += bias
    return _gather(bags, table.view(-1, out_channels), n, spatial, channels_last)


@_label_conv.register_fake
def _label_conv_fake(
    labels: Tensor, weight: Tensor, bias: Tensor | None, padding_mode: str, channels_last: bool
) -> Tensor:
    if channels_last:
        return weight.new_empty((labels.shape[0], *labels.shape[1:], weight.shape[0])).movedim(-1, 1)
    return weight.new_empty((labels.shape[0], weight.shape[0], *labels.shape[1:]))


@torch.library.custom_op("spadenorm::label_conv_backward", mutates_args=())
def _label_conv_backward(
    grad: Tensor, labels: Tensor, num_classes: int, kernel_size: list[int], padding_mode: str
) -> tuple[Tensor, Tensor]:
    """Weight (O, K, \\*k) and bias (O,) gradients of :func:`label_conv` for the (N, O, \\*S) output gradient."""
    out_channels = grad.shape[1]
    spatial = list(grad.shape[2:])
    taps = math.prod(kernel_size)
    grad_weight = grad.new_zeros((out_channels, num_classes, *kernel_size))
    grad_bias = grad.new_zeros(out_channels)
    num_positions = grad.numel() // max(out_channels, 1)
    if num_positions == 0 or out_channels == 0:
        return grad_weight, grad_bias
    pads = [k // 2 for k in kernel_size]
    padded = _padded_labels(labels, pads, padding_mode, num_classes, torch.int64)
    padded_spatial = list(padded.shape[1:])
    q_total = padded.numel()
    ids = padded.reshape(-1)
    # Padded positions sorted by id (ties by position: unique keys sort fast and stably), and where each id's run
    # starts; the (sentinel) id K of zero padding sorts last.
    order = torch.sort(ids * q_total + torch.arange(q_total, device=ids.device)).indices
    starts = torch.searchsorted(ids[order], torch.arange(num_classes + 1, device=ids.device))
    # Coordinates of the sorted positions: sample, then padded spatial coordinates.
    rest = order
    coords: list[Tensor] = []
    for size in reversed(padded_spatial):
        coords.append(rest % size)
        rest = rest // size
    coords.reverse()
    sample = rest
    dtype = _index_dtype(num_positions, taps * q_total)
    # Output position p = q - t per (tap, sorted position): its flat row index and whether it lies inside the map.
    row = sample.view(1, -1) * math.prod(spatial)
    inside = torch.ones((), dtype=torch.bool, device=ids.device)
    stride = math.prod(spatial)
    for coord, size, offset in zip(coords, spatial, _tap_offsets(kernel_size, ids.device), strict=True):
        stride //= size
        position = coord.view(1, -1) - offset.view(-1, 1)  # (taps, Q)
        inside = inside & (position >= 0) & (position < size)
        row = row + position * stride
    rows_index = torch.where(inside, row, 0).to(dtype).reshape(-1)
    weights = inside.to(grad.dtype).reshape(-1)
    bag_starts = (starts.view(1, -1) + torch.arange(taps, device=ids.device).view(-1, 1) * q_total).to(dtype)
    rows = _position_rows(grad)  # (positions, O)
    sums = F.embedding_bag(rows_index, rows, bag_starts.reshape(-1), mode="sum", per_sample_weights=weights)
    sums = sums.view(taps, num_classes + 1, out_channels)
    grad_weight.copy_(sums[:, :num_classes].permute(2, 1, 0).reshape(grad_weight.shape))
    grad_bias.copy_(sums[taps // 2].sum(0))
    return grad_weight, grad_bias


@_label_conv_backward.register_fake
def _label_conv_backward_fake(
    grad: Tensor, labels: Tensor, num_classes: int, kernel_size: list[int], padding_mode: str
) -> tuple[Tensor, Tensor]:
    return grad.new_empty((grad.shape[1], num_classes, *kernel_size)), grad.new_empty(grad.shape[1])


def _setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor | None, str, bool], output: Tensor) -> None:
    labels, weight, bias, padding_mode, _ = inputs
    ctx.save_for_backward(labels)
    ctx.num_classes = weight.shape[1]
    ctx.kernel_size = list(weight.shape[2:])
    ctx.padding_mode = padding_mode
    ctx.has_bias = bias is not None


def _backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, Tensor | None, None, None]:
    (labels,) = ctx.saved_tensors
    grad_weight, grad_bias = _label_conv_backward(grad, labels, ctx.num_classes, ctx.kernel_size, ctx.padding_mode)
    return None, grad_weight, grad_bias if ctx.has_bias else None, None, None


_label_conv.register_autograd(_backward, setup_context=_setup_context)


def _setup_backward_context(ctx: Any, inputs: tuple[Tensor, Tensor, int, list[int], str], output: Any) -> None:
    grad, labels, num_classes, kernel_size, padding_mode = inputs
    ctx.save_for_backward(labels)
    ctx.padding_mode = padding_mode
    ctx.channels_last = not grad.is_contiguous()
    ctx.weight_shape = (grad.shape[1], num_classes, *kernel_size)


def _backward_of_backward(
    ctx: Any, grad_weight_grad: Tensor | None, grad_bias_grad: Tensor | None
) -> tuple[Tensor | None, None, None, None, None]:
    """The backward is linear in the output gradient, and its adjoint is the forward: gather the rows back."""
    (labels,) = ctx.saved_tensors
    if grad_weight_grad is None and grad_bias_grad is None:
        return None, None, None, None, None
    if grad_weight_grad is None:
        assert grad_bias_grad is not None
        grad_weight_grad = grad_bias_grad.new_zeros(ctx.weight_shape)
    out = _label_conv(labels, grad_weight_grad, grad_bias_grad, ctx.padding_mode, ctx.channels_last)
    return out, None, None, None, None


_label_conv_backward.register_autograd(_backward_of_backward, setup_context=_setup_backward_context)


_CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _conv(x: Tensor, weight: Tensor, padding_mode: str) -> Tensor:
    """``nn.Conv*d``'s forward without bias: padding ``k // 2`` in ``padding_mode``, stride 1."""
    pads = [k // 2 for k in weight.shape[2:]]
    conv = _CONVS[len(pads)]
    if padding_mode == "zeros":
        return conv(x, weight, padding=pads)
    return conv(F.pad(x, [p for pad in reversed(pads) for p in (pad, pad)], mode=padding_mode), weight)


def label_conv(
    labels: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    extra: Tensor | None = None,
    padding_mode: str = "zeros",
    channels_last: bool = False,
) -> Tensor:
    """``conv(cat([one_hot(labels), extra], 1), weight, bias)`` with padding ``k // 2`` in ``padding_mode``: the
    first K = ``weight.shape[1] - E`` input channels by table lookups (see the module docstring), the E ``extra``
    channels by a convolution with the remaining input channels of the weight.

    Under autocast the weight and bias are cast to the autocast dtype first, as ``F.conv*d`` casts them. Arguments
    are not checked here (ids in [0, K), shapes, odd kernel sizes): :func:`spadenorm.functional.label_conv` checks
    them.

    Args:
        labels: (N, \\*S) integer class ids in [0, K), any integer dtype.
        weight: (O, K + E, \\*k) floating-point weight with odd kernel sizes, ``len(k) == labels.dim() - 1``.
        bias: (O,) or ``None``.
        extra: ``None`` or floating-point (N, E, \\*S): the input channels after the K classes.
        padding_mode: one of :data:`PADDING_MODES`.
        channels_last: return the result channels last in memory ((N, \\*S, O), the order it is computed in),
            else contiguous.

    Returns:
        (N, O, \\*S) in the weight's dtype (the autocast dtype under autocast).
    """
    device_type = labels.device.type
    if torch.is_autocast_enabled(device_type) and weight.dtype != torch.float64:
        dtype = torch.get_autocast_dtype(device_type)
        weight, bias = weight.to(dtype), None if bias is None else bias.to(dtype)
    num_classes = weight.shape[1] - (0 if extra is None else extra.shape[1])
    out = _label_conv(labels, weight[:, :num_classes], bias, padding_mode, channels_last)
    if extra is None:
        return out
    return out + _conv(extra.to(weight.dtype), weight[:, num_classes:], padding_mode)  # keeps out's layout
