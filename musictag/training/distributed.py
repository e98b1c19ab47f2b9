"""One process or many: the few collective operations a run needs, over torchrun's environment.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; with them a run joins a process group
(NCCL on GPUs, gloo on CPUs) and each process trains DistributedDataParallel replicas on its share
of every epoch. Without them the same calls are no-ops, so the training loop has one code path.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..device import resolve_device

#: Long enough for a process to decode its share of MTAT while the others wait for it.
TIMEOUT = datetime.timedelta(hours=3)


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order (``[value]`` alone)."""
        if not self.active:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def mean(self, value: float) -> float:
        if not self.active:
            return value
        return float(sum(self.gather(value)) / self.world_size)

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Give every process rank 0's batch-norm statistics (each updated its own last step)."""
        if self.active:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)


def environment_rank() -> int:
    """This process's rank as torchrun announced it, before any process group exists."""
    return int(os.environ.get("RANK", "0"))


def start(device: str = "auto") -> Distributed:
    """The process group from torchrun's environment (none when run as a single process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = environment_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device)
    if resolved.type == "cuda" and world_size > 1:
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo", timeout=TIMEOUT)
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved)


def stop(context: Distributed) -> None:
    if context.active and dist.is_initialized():
        dist.destroy_process_group()
