"""Which device a job computes on, and telling PhiFlow about it.

Sweeps say ``device: auto | cpu | cuda``; ``auto`` is CUDA when the process sees a GPU (under Slurm: when the job
holds one) and the CPU otherwise. PhiFlow allocates its constants (boundary masks, forcing fields, grids) on its
backend's default device, which phiml sets to the first GPU whenever one exists, so a simulation must name its
device explicitly or a CPU job on a GPU node would mix devices.
"""

from __future__ import annotations

from typing import Literal

import torch

from fluidperc.errors import UserError

DeviceName = Literal["auto", "cpu", "cuda"]
DEVICE_NAMES = ("auto", "cpu", "cuda")


def resolve(name: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """``auto``/``cpu``/``cuda`` (or a torch.device) -> the torch.device this process uses. Under several ranks
    per node, rank ``local_rank`` takes GPU ``local_rank`` modulo the GPUs it sees."""
    if isinstance(name, torch.device):
        return name
    name = name or "auto"
    if name not in DEVICE_NAMES and not name.startswith("cuda:"):
        raise UserError(f"device '{name}': expected one of {', '.join(DEVICE_NAMES)}")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if name == "auto":
            return torch.device("cpu")
        raise UserError(f"device '{name}' was asked for but this process sees no CUDA GPU "
                        f"(CUDA_VISIBLE_DEVICES={_visible()}); ask the scheduler for a GPU or set device: auto")
    if name.startswith("cuda:"):
        return torch.device(name)
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def _visible() -> str:
    import os

    return os.environ.get("CUDA_VISIBLE_DEVICES", "unset")


def use_for_phiflow(device: torch.device) -> None:
    """Make PhiFlow's torch backend allocate new tensors on ``device`` (phiml keeps one default per process)."""
    from phiml.backend.torch import TORCH

    want = "cpu" if device.type == "cpu" else f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    for d in TORCH.list_devices():
        if d.ref == want:
            TORCH.set_default_device(d)
            return
    raise UserError(f"PhiFlow's torch backend does not list device {want}; it lists "
                    f"{', '.join(d.ref for d in TORCH.list_devices())}")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a host clock read after it times the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    """(fn(), seconds), the device's queued work included."""
    import time

    t0 = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - t0
