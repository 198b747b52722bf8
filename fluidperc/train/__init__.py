"""Training cells (task x loss x resolution x seed) on 1 process, N gloo processes or N GPUs.

``CellConfig``, ``TrainSettings`` and ``is_done`` import without torch (sweep validation and planning use them);
``run`` loads the trainer on first use."""

from __future__ import annotations

from typing import Any

from fluidperc.train.config import CellConfig, TrainSettings
from fluidperc.train.outputs import is_done

__all__ = ["CellConfig", "TrainSettings", "is_done", "run"]


def __getattr__(name: str) -> Any:
    if name == "run":
        from fluidperc.train.trainer import run

        return run
    raise AttributeError(f"module 'fluidperc.train' has no attribute '{name}'")
