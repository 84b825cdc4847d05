"""Per-pixel rows of a class table, ``table[labels]``, as an opaque registered op with its own backward.

``F.embedding`` would do, but Inductor's CPU code for its backward (a scatter-add over the label map) computes wrong
table gradients and corrupts the heap in torch 2.13 when the graph also differentiates other inputs. Registering
the lookup with ``torch.library.custom_op`` keeps ``torch.compile`` from generating code for it: forward and
backward run these eager implementations, and the table gradient is an ``index_add_`` (sequential on CPU, hence
deterministic). Used by the ``"torch"`` backend for CLADE's class tables.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def _indices(labels: Tensor) -> Tensor:
    """Labels in a dtype that ``F.embedding`` and ``index_add_`` index with (int32 or int64)."""
    return labels if labels.dtype in (torch.int32, torch.int64) else labels.int()


@torch.library.custom_op("spadenorm::class_rows", mutates_args=())
def class_rows(table: Tensor, labels: Tensor) -> Tensor:
    """``table[labels]``: (K, C) table and (N, *spatial) labels of any integer dtype -> (N, *spatial, C)."""
    return F.embedding(_indices(labels), table)


@class_rows.register_fake
def _class_rows_fake(table: Tensor, labels: Tensor) -> Tensor:
    return table.new_empty((*labels.shape, table.shape[1]))


@torch.library.custom_op("spadenorm::class_rows_backward", mutates_args=())
def class_rows_backward(grad: Tensor, labels: Tensor, num_rows: int) -> Tensor:
    """Sum of the (N, *spatial, C) gradient rows per class: the (num_rows, C) table gradient."""
    out = grad.new_zeros((num_rows, grad.shape[-1]))
    return out.index_add_(0, _indices(labels).reshape(-1), grad.reshape(-1, grad.shape[-1]))


@class_rows_backward.register_fake
def _class_rows_backward_fake(grad: Tensor, labels: Tensor, num_rows: int) -> Tensor:
    return grad.new_empty((num_rows, grad.shape[-1]))


def _setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
    table, labels = inputs
    ctx.save_for_backward(labels)
    ctx.num_rows = table.shape[0]


def _backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
    (labels,) = ctx.saved_tensors
    return class_rows_backward(grad, labels, ctx.num_rows), None


class_rows.register_autograd(_backward, setup_context=_setup_context)
