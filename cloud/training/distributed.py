"""Data-parallel plumbing: ``torchrun`` environment -> process group, DDP wrapping, sharding.

Under ``torchrun --nproc_per_node N`` the env has ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``;
we start a process group (NCCL when CUDA is available, else gloo) and wrap the trainable
module in :class:`~torch.nn.parallel.DistributedDataParallel`, whose backward hook averages
gradients across ranks with AllReduce. A plain ``python`` run is world size 1 (no group).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # we started the process group (and must destroy it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistContext:
    """Join the process group described by the environment (or the one already started)."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        return DistContext(rank, world, local, _device(local, dist.get_backend() == "nccl"), owns_group=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:  # single process: the GPU when there is one
        return DistContext(device=torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    use_nccl = torch.cuda.is_available() and torch.cuda.device_count() > local
    dist.init_process_group(backend="nccl" if use_nccl else "gloo", rank=rank, world_size=world)
    return DistContext(rank, world, local, _device(local, use_nccl), owns_group=True)


def _device(local_rank: int, cuda: bool) -> torch.device:
    if cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def wrap_ddp(module: nn.Module, ctx: DistContext) -> nn.Module:
    """DDP-wrap ``module`` when running data-parallel (gradients AllReduce-averaged)."""
    if not ctx.enabled:
        return module
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def shard(indices: np.ndarray, ctx: DistContext) -> np.ndarray:
    """This rank's contiguous, equal-sized part of one global batch."""
    if not ctx.enabled:
        return indices
    per = len(indices) // ctx.world_size
    return indices[ctx.rank * per : (ctx.rank + 1) * per]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def cleanup(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
