"""Reproducible, resumable data order: every step's batch is a function of (seed, step, rank) only.

Epoch ``e`` visits the dataset in the order ``randperm(len, seed=f(seed, e))``; step ``k`` of the run is step
``k % steps_per_epoch`` of epoch ``k // steps_per_epoch`` and takes the next ``batch_size * world_size`` indices of
that order, rank ``r`` the ``r``-th slice of them (the last incomplete batch of an epoch is dropped). Resuming at
step ``k`` therefore replays exactly the batches an uninterrupted run would have seen, with any number of loader
workers. Random augmentations (crop and flip of the folder datasets) are drawn from a generator seeded from
``(seed, epoch, index)`` per item, so they replay too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset, Sampler


class ItemDataset(Protocol):
    """A map-style dataset with a length: what :class:`KeyedDataset` wraps."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


def epoch_permutation(length: int, seed: int, epoch: int) -> torch.Tensor:
    """The visiting order of ``epoch``: a permutation of ``range(length)``."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + 17) % (2**63))
    return torch.randperm(length, generator=g)


def steps_per_epoch(length: int, batch_size: int, world_size: int = 1) -> int:
    """Full global batches (``batch_size`` per process, ``world_size`` processes) in a dataset of ``length`` items.

    Raises:
        ValueError: the dataset is smaller than one global batch.
    """
    global_batch = batch_size * world_size
    if length < global_batch:
        raise ValueError(
            f"the dataset has {length} items, fewer than one global batch ({batch_size} per process x "
            f"{world_size} processes); lower --batch-size or add data"
        )
    return length // global_batch


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(epoch, index)`` keys for steps ``start_step .. total_steps - 1`` of one rank.

    Args:
        length: dataset size.
        batch_size: items per rank and step.
        seed: run seed.
        start_step: first step to produce (the resumed step).
        total_steps: one past the last step.
        rank, world_size: this process's slice of every global batch.

    Example:
        >>> sampler = StepBatchSampler(10, 2, seed=0, start_step=3, total_steps=7)
        >>> sampler.steps_per_epoch, len(sampler), [batch[0][0] for batch in sampler]  # epochs of steps 3..6
        (5, 4, [0, 0, 1, 1])
    """

    def __init__(
        self,
        length: int,
        batch_size: int,
        *,
        seed: int,
        start_step: int,
        total_steps: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.steps_per_epoch = steps_per_epoch(length, batch_size, world_size)
        self.length = length
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps
        self.rank = rank
        self.world_size = world_size
        self.global_batch = batch_size * world_size

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order, order_epoch = torch.empty(0, dtype=torch.long), -1
        for step in range(self.start_step, self.total_steps):
            epoch, position = divmod(step, self.steps_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = epoch_permutation(self.length, self.seed, epoch), epoch
            first = position * self.global_batch + self.rank * self.batch_size
            yield [(epoch, int(i)) for i in order[first : first + self.batch_size]]


class KeyedDataset(Dataset):
    """``dataset[index]`` for keys ``(epoch, index)``, with the item's random augmentation seeded from the key.

    A dataset with a ``generator`` attribute (the folder datasets' crop and flip) gets a fresh generator seeded from
    ``(seed, epoch, index)`` before each item is read; others (the synthetic scenes) are deterministic already.
    """

    def __init__(self, dataset: ItemDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        if hasattr(self.dataset, "generator"):
            item_seed = (self.seed * 1_000_003 + epoch) * 1_000_033 + index
            self.dataset.generator = torch.Generator().manual_seed(item_seed % (2**63))
        return self.dataset[index]
