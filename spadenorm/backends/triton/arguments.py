"""What a launcher derives from its arguments' shapes and strides: the copies a layout needs, the (N, C, S) strides
of each tensor as the kernels take them, and the kind of gamma and beta.

A transform maps an input and x (whose layout decides the copy) to what the kernel reads; inputs that need none are
passed as they are. Strides are tuples: ``(n, c, s)`` for tensors of x's rank, ``(row, column, 0)`` for (K, C) class
tables, ``(n, s)`` for label maps, ``(n, c)`` for per-(n, c) scale and shift, ``(plane, row)`` for the (2, N or 1, C)
statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from .kernels.common import Kind
from .layout import as_flattenable, ncs_strides, ncs_view, per_sample_strides, spatial_size

Transform = Callable[[Tensor, Tensor], Tensor]


def transformed(transforms: tuple[Transform | None, ...] | None, x: Tensor, *tensors: Tensor | None) -> Any:
    """``tensors`` with their transforms applied (x's layout decides the copies)."""
    if transforms is None:
        return tensors
    return tuple(t if f is None or t is None else f(t, x) for f, t in zip(transforms, tensors, strict=True))


def _flattened(t: Tensor, x: Tensor) -> Tensor:
    return as_flattenable(t, x)


def _channel_major(table: Tensor, x: Tensor) -> Tensor:
    """A (K, C) table with each channel's K entries together: NCHW tiles gather one channel's entries of many
    classes (a few cache lines instead of K rows apart)."""
    return table.t().contiguous().t()


def _at_x_positions(t: Tensor, x: Tensor) -> Tensor:
    """A map broadcast over some spatial dimensions only, such as (N, C, H, 1): no single stride walks its positions
    in x's order, so it is materialized at x's shape, in x's memory format."""
    return as_flattenable(t.expand(*t.shape[:2], *x.shape[2:]), x)


def _flat_label_map(labels: Tensor, x: Tensor) -> Tensor:
    """(N, *spatial) labels as an (N, S) tensor: a view where the spatial dimensions merge, else a copy."""
    return labels.flatten(1)


def x_transform(x: Tensor) -> Transform | None:
    return None if ncs_view(x) is not None else _flattened


def _modulation_transform(t: Tensor | None, x: Tensor, tables: bool) -> Transform | None:
    if t is None:
        return None
    if tables:
        return _channel_major if ncs_strides(as_flattenable(x, x)).s == 1 and t.stride(0) != 1 else None
    if any(size != 1 for size in t.shape[2:]) and t.shape[2:] != x.shape[2:]:
        return _at_x_positions
    return None if ncs_view(t) is not None else _flattened


def labels_transform(labels: Tensor | None) -> Transform | None:
    if labels is None:
        return None
    return None if labels.dim() == 2 or labels.flatten(1).data_ptr() == labels.data_ptr() else _flat_label_map


def modulation(t: Tensor | None, tables: bool) -> tuple[tuple[int, ...], Kind]:
    """(strides, kind) of a prepared gamma/beta: (K, C) table rows, or an (N, C, S) view."""
    if t is None:
        return (0, 0, 0), Kind.NONE
    if tables:  # (K, C): row stride in the "n" slot
        return (t.stride(0), t.stride(1), 0), Kind.TABLE
    strides = ncs_strides(t)
    return tuple(strides), Kind.TENSOR if strides.s else Kind.VECTOR


def label_strides(labels: Tensor | None) -> tuple[int, int]:
    """(n, s) strides of an (N, *spatial) label map whose spatial dimensions merge (zeros when absent)."""
    if labels is None:
        return 0, 0
    flat = labels.flatten(1) if labels.dim() > 2 else labels
    return flat.stride(0), flat.stride(1)


def pair(t: Tensor | None) -> tuple[int, int]:
    return (0, 0) if t is None else per_sample_strides(t)


def stat_strides(stats: Tensor) -> tuple[int, int]:
    """(plane, row) strides of (2, N or 1, C) statistics or coefficients: row stride 0 when shared by the batch."""
    return stats.stride(0), 0 if stats.shape[1] == 1 else stats.stride(1)


def shape(x: Tensor) -> tuple[int, int, int]:
    return x.shape[0], x.shape[1], spatial_size(x)


def inputs(x: Tensor, *tensors: Tensor | None, tables: bool) -> tuple[Transform | None, ...]:
    """Transforms of x, gamma, beta and labels (in that order in ``tensors``: gamma, beta, labels)."""
    gamma, beta, labels = tensors
    return (x_transform(x), _modulation_transform(gamma, x, tables), _modulation_transform(beta, x, tables),
            labels_transform(labels))  # fmt: skip
