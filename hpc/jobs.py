"""Job callables that need the scheduler: distributed environment from Slurm, and checkpoint-and-requeue."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, Callable

import submitit
from submitit.slurm.slurm import SlurmJobEnvironment


class TrainJob(submitit.helpers.Checkpointable):
    """Trains one cell, or several as one computation (fluidperc.train.run_pack). On Slurm's pre-timeout signal (or scancel --signal=USR2) submitit calls checkpoint() and
    requeues the job, which resumes from the checkpoint. While the training loop runs, the signal is held until
    the step in flight has finished and been logged, so the checkpoint holds exactly the steps done: the cell
    resumes where it stopped, not at its last periodic checkpoint."""

    def __init__(self) -> None:
        self.trainer: Any = None

    def __call__(self, cells_json: list[str], out_dirs: list[str]) -> list:
        import torch

        from fluidperc.train.trainer import run_pack  # torch: in the job process only

        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus:
            torch.set_num_threads(int(cpus))
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        usr = getattr(signal, "SIG" + SlurmJobEnvironment.USR_SIG)
        handler = signal.getsignal(usr)
        if callable(handler):  # submitit's checkpoint-and-requeue handler, installed before this call
            signal.signal(usr, self._at_step_end(handler))
        results = run_pack(cells_json, out_dirs, trainer_hook=self._keep)
        # Done and saved: a pre-timeout signal from now on has nothing to checkpoint. Ignored, not left to Python's
        # shutdown, which restores the default action (terminate): a signal in that window ended a finished job
        # with exit 140, FAILED in accounting although every cell was complete.
        signal.signal(usr, signal.SIG_IGN)
        return results

    def _at_step_end(self, handler: Callable[[int, Any], None]) -> Callable[[int, Any], None]:
        handler = _requeue_survives_sigterm(handler)

        def deferred(signum: int, frame: Any) -> None:
            trainer = self.trainer
            if trainer is not None and trainer.in_loop:
                print(f"checkpoint signal during step {trainer.step + 1}: saving once it is done", flush=True)
                trainer.at_step_end = lambda: handler(signum, None)
            else:
                handler(signum, frame)
        return deferred

    def _keep(self, trainer: Any) -> None:
        self.trainer = trainer

    def checkpoint(self, cells_json: list[str], out_dirs: list[str]) -> submitit.helpers.DelayedSubmission:
        if self.trainer is not None:
            saved = self.trainer.save_if_consistent()
            print(f"checkpoint signal at step {self.trainer.step}: {'saved' if saved else 'mid-step, kept the last checkpoint'}",
                  flush=True)
        return submitit.helpers.DelayedSubmission(TrainJob(), cells_json, out_dirs)


def _requeue_survives_sigterm(handler: Callable[[int, Any], None]) -> Callable[[int, Any], None]:
    """submitit's handler checkpoints, then runs `scontrol requeue` for this job. The requeue ends the job's step
    with SIGTERM, and on a loaded node that SIGTERM reached scontrol before it had exited: it died, and the job was
    reported failed although Slurm had requeued it. An ignored signal stays ignored across exec, so with SIGTERM
    ignored here scontrol finishes; this process ignores it already (submitit bypasses it) and exits next."""
    def wrapped(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        handler(signum, frame)
    return wrapped


def evaluate_cells(jobs: list[tuple[str, str, str, str]]) -> list[str]:
    """The evaluate stage's job: its cells' evaluations one after another in this process (evaluate.cells_per_task),
    each written when it is done; a cell that fails does not stop the others, and the job then fails naming it.
    fluidperc's evaluation (torch, xarray) loads in the job, not the planner."""
    from fluidperc.evaluation.evaluate import evaluate_cell as evaluate

    if len(jobs) == 1:
        return [evaluate(*jobs[0])]
    done, failed = [], []
    for args in jobs:
        try:
            done.append(evaluate(*args))
        except Exception as err:  # noqa: BLE001 - reported below, after the others
            failed.append(f"{Path(args[2]).stem}: {type(err).__name__}: {err}")
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(jobs)} evaluation(s) failed: " + "; ".join(failed))
    return done


def evaluate_pipeline(name: str, *args: Any) -> str:
    """A registered evaluation pipeline's job (fluidperc.evaluation.pipelines: the combined pipeline, low-res sim
    + SOL + SR against the high-res sim), its evaluation loaded in the job."""
    from fluidperc.evaluation.pipelines import PIPELINES

    return PIPELINES[name].load()(*args)
