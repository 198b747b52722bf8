"""Job callables that need the scheduler: distributed environment from Slurm, and checkpoint-and-requeue."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable

import submitit

LAUNCHER_PID = "FLUIDPERC_LAUNCHER_PID"


def _started(pid: int) -> str | None:
    """The process's start time from /proc (a pid alone may be reused), or None once it is gone or a zombie
    (dead, not yet reaped by its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if len(fields) < 20 or fields[0] in ("Z", "X") else fields[19]


def local_job(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a local-backend job that dies with the launcher that started it. A local launch waits for its jobs;
    if it is killed (kill -9, a closed terminal), its jobs must not go on unsupervised and race the relaunch
    that finishes the work. Every write they make is atomic, so being killed at any moment is safe."""
    pid = int(os.environ.get(LAUNCHER_PID, "0"))
    born = _started(pid) if pid else None
    if pid and born is None:  # the launcher died before this job got going
        os.kill(os.getpid(), signal.SIGKILL)
    if born is not None:
        def watch() -> None:
            while _started(pid) == born:
                time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, name="launcher-watchdog", daemon=True).start()
    return fn(*args)


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
