"""Job callables that need the scheduler: distributed environment from Slurm, and checkpoint-and-requeue."""

from __future__ import annotations

import os
from typing import Any

import submitit


class TrainJob(submitit.helpers.Checkpointable):
    """Trains one cell. On Slurm's pre-timeout signal (or scancel --signal=USR2) submitit calls checkpoint():
    the trainer saves unless it is mid-step, and the job is requeued to resume from its checkpoint."""

    def __init__(self) -> None:
        self.trainer: Any = None

    def __call__(self, cell_json: str, out_dir: str) -> dict:
        import torch

        from fluidperc.train import run

        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus:
            torch.set_num_threads(int(cpus))
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return run(cell_json, out_dir, trainer_hook=self._keep)

    def _keep(self, trainer: Any) -> None:
        self.trainer = trainer

    def checkpoint(self, cell_json: str, out_dir: str) -> submitit.helpers.DelayedSubmission:
        if self.trainer is not None:
            saved = self.trainer.save_if_consistent()
            print(f"checkpoint signal at step {self.trainer.step}: {'saved' if saved else 'mid-step, kept the last checkpoint'}",
                  flush=True)
        return submitit.helpers.DelayedSubmission(TrainJob(), cell_json, out_dir)


def evaluate_cell(*args: Any) -> str:
    """The evaluate stage's per-cell job; fluidperc's evaluation (torch, xarray) loads in the job, not the planner."""
    from fluidperc.evaluation.evaluate import evaluate_cell as evaluate

    return evaluate(*args)


def evaluate_combined(*args: Any) -> str:
    """The combined pipeline's job (low-res sim + SOL + SR against the high-res sim), loaded in the job."""
    from fluidperc.evaluation.combined import evaluate_combined as evaluate

    return evaluate(*args)
