"""torchrun / DDP plumbing: process-group setup from the environment, rank helpers, cross-rank checks.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; without them the run
is a single process and nothing here touches ``torch.distributed``. The backend follows the device: NCCL for CUDA,
gloo for CPU. The SPADE layers' ``sync_batch`` statistics are reduced by spadenorm itself once the default process
group exists.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, and its device (the local rank's GPU under torchrun)."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def say(self, *args: object) -> None:
        """``print(*args)``, flushed, on rank 0 only: one line per run, not one per process."""
        if self.is_main:
            print(*args, flush=True)


def default_device(requested: str | None, local_rank: int = 0) -> torch.device:
    """``requested``, else ``cuda:<local_rank>`` when CUDA is available, else CPU. A bare ``cuda`` gets the local
    rank's GPU."""
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def init_distributed(requested_device: str | None) -> DistInfo:
    """Initialise the default process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = default_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world_size, device)


def cleanup_distributed() -> None:
    """Destroy the default process group, if there is one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def gather_objects(obj: T, info: DistInfo) -> list[T]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process); a collective: every rank must call it."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def module_checksum(*modules: nn.Module | None) -> str:
    """SHA-1 of every parameter and buffer's bytes: equal strings mean bitwise-equal weights."""
    h = hashlib.sha1()
    for module in modules:
        if module is None:
            continue
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            h.update(name.encode())
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
