"""Training cells (task x loss x resolution x seed) on 1 process, N gloo processes or N GPUs."""

from fluidperc.train.config import CellConfig, TrainSettings
from fluidperc.train.run import is_done, run

__all__ = ["CellConfig", "TrainSettings", "is_done", "run"]
