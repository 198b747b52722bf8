"""Training cells (task x loss x resolution x seed) on 1 process, N gloo processes or N GPUs.

``is_done`` imports without torch (planning uses it); ``run`` loads the trainer on first use. The cell a job
trains is a :class:`fluidperc.tasks.cell.CellConfig`."""

from __future__ import annotations

from typing import Any

from fluidperc.train.outputs import is_done

__all__ = ["is_done", "run"]


def __getattr__(name: str) -> Any:
    if name == "run":
        from fluidperc.train.trainer import run  # torch: planning imports fluidperc.train

        return run
    raise AttributeError(f"module 'fluidperc.train' has no attribute '{name}'")
