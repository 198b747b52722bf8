"""Process-group set-up from the standard torch environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

torchrun sets these; under Slurm the hpc layer exports them from SLURM_* (submitit's helper) before calling
fluidperc.train.run, so the science code never needs to know which scheduler started it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    grouped: bool = False  # a process group exists (also with one rank, when the caller made it): DDP is used
    owns_group: bool = False  # setup made it, so teardown destroys it

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Dist:
    """``device``: auto | cpu | cuda (fluidperc.devices). Each rank takes GPU LOCAL_RANK; NCCL on CUDA, gloo on
    the CPU. A process group the caller already made is used as it is (benchmarks/gpu_check.py runs one NCCL rank
    through DDP that way)."""
    from fluidperc.devices import resolve

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), local, dev, grouped=True)
    if world > 1:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world,
                                device_id=dev if dev.type == "cuda" else None)
        return Dist(rank, world, local, dev, grouped=True, owns_group=True)
    return Dist(rank, world, local, dev)


def barrier(d: Dist) -> None:
    if d.grouped:
        dist.barrier()


def teardown(d: Dist) -> None:
    if d.owns_group and dist.is_initialized():
        dist.destroy_process_group()
