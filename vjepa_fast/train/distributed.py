"""Process-group set-up and model wrapping for 1 process, DDP or FSDP2, from one code path.

Launch with `torchrun --nproc_per_node N ...` (any number of nodes); without torchrun it is one process.
Backend: NCCL with CUDA, gloo on the CPU.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    mode: str  # none, ddp, fsdp

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(parallel: str = "auto") -> DistContext:
    """Starts the process group when launched by torchrun (WORLD_SIZE set), picks the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    mode = parallel
    if mode == "auto":
        mode = "ddp" if world > 1 else "none"
    if mode == "ddp" and world == 1:
        mode = "none"
    return DistContext(rank, world, local_rank, device, mode)


def wrap_model(module: nn.Module, ctx: DistContext, block_types: tuple[type[nn.Module], ...]) -> nn.Module:
    """DDP, or FSDP2 (`fully_shard` on every block, then the root), or the module itself."""
    if ctx.mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        # static_graph: the same parameters (e.g. unused mask tokens) go without gradients every step.
        return DistributedDataParallel(module, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None,
                                       static_graph=True)
    if ctx.mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for sub in module.modules():
            if isinstance(sub, block_types):
                fully_shard(sub)
        fully_shard(module)
    return module


def shard_like(target: nn.Module, ctx: DistContext, block_types: tuple[type[nn.Module], ...]) -> None:
    """Shards the EMA target encoder exactly like the context encoder (FSDP2), so local shards line up."""
    if ctx.mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for sub in target.modules():
            if isinstance(sub, block_types):
                fully_shard(sub)
        fully_shard(target)


def local_tensor(p: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor parameter (FSDP2), or the tensor itself."""
    data = p.detach()
    return data.to_local() if hasattr(data, "to_local") else data


def all_reduce_mean(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.distributed:
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= ctx.world_size
    return value


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
