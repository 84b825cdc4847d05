"""Cross-process statistics for ``norm="sync_batch"``, built on plain ``torch.distributed`` collectives.

Forward: every process computes its local per-channel (count, mean, M2) and one ``all_gather`` brings them together;
the global mean and biased variance follow from Chan et al.'s parallel merge, which stays exact when the local means
differ widely (no sum-of-squares cancellation). Backward: the per-channel sums of ``g`` and ``g * x_hat`` are
``all_reduce``-d in one call. Processes may hold different batch sizes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import Tensor

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["all_reduce_sum", "is_sync_active", "sync_mean_var"]


def is_sync_active(process_group: ProcessGroup | None = None) -> bool:
    """Whether statistics must be reduced across processes: ``torch.distributed`` is initialized with >1 rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    return dist.get_world_size(process_group) > 1


def sync_mean_var(
    mean: Tensor, var: Tensor, count: int, process_group: ProcessGroup | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Merge per-process statistics into global ones, without reading anything back to the host.

    Args:
        mean: local mean, any shape (typically (1, C, 1, 1)), fp32 or fp64.
        var: local biased variance, same shape and dtype as ``mean``.
        count: number of elements each local statistic was taken over.
        process_group: the group to reduce over (``None``: the default group).

    Returns:
        ``(mean, var, total_count)``: the global mean and biased variance, shaped like the inputs, and the total count
        as a 0-d tensor in ``mean``'s dtype on its device (exact: counts below 2**24 in fp32, 2**53 in fp64).
    """
    world = dist.get_world_size(process_group)
    # float64 for the exchange: counts stay exact and the merge adds no rounding of its own.
    local = torch.stack([torch.full_like(mean, float(count)), mean, var * count]).double()
    gathered = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(gathered, local.contiguous(), group=process_group)
    stacked = torch.stack(gathered)  # (world, 3, *stat_shape)
    counts, means, m2s = stacked[:, 0], stacked[:, 1], stacked[:, 2]
    total = counts.sum(0)
    global_mean = (counts * means).sum(0) / total
    m2 = (m2s + counts * (means - global_mean) ** 2).sum(0)
    total_count = total.reshape(-1)[0].to(mean.dtype)
    return global_mean.to(mean.dtype), (m2 / total).to(var.dtype), total_count


def all_reduce_sum(tensors: list[Tensor], process_group: ProcessGroup | None = None) -> list[Tensor]:
    """Sum same-shaped tensors over the process group with one collective; returns new tensors."""
    packed = torch.stack(tensors)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=process_group)
    return list(packed.unbind(0))
