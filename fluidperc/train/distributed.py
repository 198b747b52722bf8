"""Process-group set-up from the standard torch environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

torchrun sets these; under Slurm the hpc layer exports them from SLURM_* (submitit's helper) before calling
fluidperc.train.run, so the science code never needs to know which scheduler started it.

Nothing listens where another machine could reach it without need. torch's env:// rendezvous would start a
TCPStore on ``*:MASTER_PORT`` even with MASTER_ADDR=127.0.0.1, so we make the store ourselves: when every rank is on
this node, a FileStore in the job's directory (no socket at all) with gloo/NCCL on ``lo``; across nodes, a
TCPStore whose socket rank 0 binds to its own cluster address (MASTER_ADDR, from Slurm), never to ``*``.
"""

from __future__ import annotations

import datetime
import gc
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from fluidperc.devices import resolve


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    grouped: bool = False  # a process group exists (also with one rank, when the caller made it): DDP is used
    owns_group: bool = False  # setup made it, so teardown destroys it
    rendezvous: str = ""  # how the ranks met: "file" (one node) or "tcp ADDRESS:PORT" (rank 0's bound store)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


STORE_TIMEOUT = datetime.timedelta(minutes=10)


def _attempt_tag() -> str:
    """Names this attempt of this job the same way on every rank (and differently on a requeue), so a store file
    that a killed earlier attempt left behind is never joined."""
    parts = [os.environ.get(k, "") for k in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID", "SLURM_RESTART_COUNT",
                                              "MASTER_PORT")]
    return "-".join(p for p in parts if p) or "0"


def _bound_listener(host: str, port: int) -> socket.socket:
    """rank 0's store socket, bound to the address ``host`` resolves to (its cluster address), never ``*``."""
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    if addr[0] in ("0.0.0.0", "::"):
        raise RuntimeError(f"MASTER_ADDR={host} resolves to the wildcard address {addr[0]}; name the node instead")
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(128)
    return sock


def make_store(rank: int, world: int, local_world: int, rendezvous_dir: Path | None
               ) -> tuple[dist.Store, object, str]:
    """The rendezvous store, what must live as long as it (rank 0's socket, or the store's file), and how the
    ranks met (recorded in result.json)."""
    if local_world >= world and rendezvous_dir is not None:
        for var in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
            os.environ.setdefault(var, "lo")  # the ranks' own connections: loopback is enough on one node
        rendezvous_dir.mkdir(parents=True, exist_ok=True)
        path = rendezvous_dir / f".rendezvous-{_attempt_tag()}"
        return dist.FileStore(str(path), world), path, "file"
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    if rank == 0:
        sock = _bound_listener(host, port)
        bound = sock.getsockname()[0]
        store = dist.TCPStore(host, port, world, True, STORE_TIMEOUT, master_listen_fd=sock.fileno())
        return store, sock, f"tcp {bound}:{port}"
    return dist.TCPStore(host, port, world, False, STORE_TIMEOUT), None, f"tcp {host}:{port}"


def setup(device: str = "auto", rendezvous_dir: Path | None = None) -> Dist:
    """``device``: auto | cpu | cuda (fluidperc.devices). Each rank takes GPU LOCAL_RANK; NCCL on CUDA, gloo on
    the CPU. ``rendezvous_dir``: a directory every rank sees (the cell's); with it, ranks that share one node meet
    through a file there. A process group the caller already made is used as it is (benchmarks/gpu_check.py runs
    one NCCL rank through DDP that way)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), local, dev, grouped=True)
    if world > 1:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        store, keep, how = make_store(rank, world, local_world, rendezvous_dir)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", store=store, rank=rank, world_size=world,
                                device_id=dev if dev.type == "cuda" else None)
        _KEEP[:] = [store, keep]
        return Dist(rank, world, local, dev, grouped=True, owns_group=True, rendezvous=how)
    return Dist(rank, world, local, dev)


def barrier(d: Dist) -> None:
    if d.grouped:
        dist.barrier()


_KEEP: list[object] = []  # the store (and rank 0's socket) live until teardown


def teardown(d: Dist) -> None:
    """Destroy the group we made; rank 0 then removes the store's file (a FileStore removes it only when every
    rank's last reference is collected, which DDP's reference cycles can delay past the process's exit)."""
    if d.owns_group and dist.is_initialized():
        dist.barrier()  # every rank is done with the store before its file goes
        dist.destroy_process_group()
    path = next((item for item in _KEEP if isinstance(item, Path)), None)
    for item in _KEEP:
        if isinstance(item, socket.socket):
            item.close()
    _KEEP.clear()
    gc.collect()
    if d.owns_group and d.is_main and path is not None:
        path.unlink(missing_ok=True)
