"""torchrun / DDP helpers: process group from the environment, reductions that also work unsharded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

from mae_domains.engine.errors import TrainingStopped

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_preference: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_preference != "cpu"
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank)


def all_reduce_sum(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_gather_objects(obj, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def run_on_main(fn: Callable[[], T], info: DistInfo) -> T | None:
    """``fn()`` on rank 0 only (None elsewhere). An exception there is raised on every rank (as
    :class:`TrainingStopped` on the others), so no rank waits forever for one that gave up."""
    result, error = None, None
    if info.is_main:
        try:
            result = fn()
        except Exception as err:  # re-raised below, after the other ranks heard of it
            error = err
    if info.enabled:
        failure = all_gather_objects(None if error is None else f"{type(error).__name__}: {error}", info)[0]
        if error is None and failure is not None:
            raise TrainingStopped(f"rank 0 stopped the run: {failure}")
    if error is not None:
        raise error
    return result


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
