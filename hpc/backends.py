"""Job backends: Slurm through submitit, submitit's LocalExecutor, and the in-process DebugExecutor.

The backend owns every scheduler parameter; stages only say what resources one job needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import submitit

from hpc.errors import UserError
from hpc.spec import Resources

SLURM_ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "CONFIGURING", "COMPLETING", "REQUEUE_HOLD"}


def slurm_reachable(timeout_s: float = 10.0) -> tuple[bool, str]:
    """Slurm is usable when sbatch is on PATH and sinfo answers."""
    if shutil.which("sbatch") is None:
        return False, "sbatch is not on PATH"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"sinfo did not answer ({err})"
    if proc.returncode != 0:
        return False, "sinfo failed: " + " ".join(proc.stderr.split())[:200]  # one line: errors are one paragraph
    return True, "sinfo answers"


def resolve_backend(requested: str) -> str:
    if requested == "auto":
        return "slurm" if slurm_reachable()[0] else "local"
    if requested == "slurm":
        ok, why = slurm_reachable()
        if not ok:
            raise UserError(
                f"--backend slurm was asked for, but Slurm is not reachable ({why}). "
                "Use --backend local to run on this machine, or check SLURM_CONF. Nothing was submitted."
            )
    return requested


def local_slots(res: Resources) -> int:
    """How many local jobs of this shape fit on this machine at once."""
    per_job = res.cpus_per_task * res.tasks_per_node
    return max(1, min(res.array_parallelism, (os.cpu_count() or 1) // per_job))


def make_executor(
    backend: str, folder: Path, job_name: str, res: Resources, dependency: str | None = None
) -> submitit.Executor:
    if backend == "slurm":
        ex = submitit.SlurmExecutor(folder=folder)
        extra = {k.replace("-", "_"): v for k, v in res.extra_sbatch.items()}
        ex.update_parameters(
            job_name=job_name,
            time=res.time_min,
            nodes=res.nodes,
            ntasks_per_node=res.tasks_per_node,
            cpus_per_task=res.cpus_per_task,
            array_parallelism=res.array_parallelism,
            stderr_to_stdout=False,
            **({"gpus_per_node": res.gpus_per_node} if res.gpus_per_node else {}),
            **({"mem": f"{int(res.mem_gb * 1024)}M"} if res.mem_gb else {}),
            **({"partition": res.partition} if res.partition else {}),
            **({"account": res.account} if res.account else {}),
            **({"qos": res.qos} if res.qos else {}),
            **({"constraint": res.constraint} if res.constraint else {}),
            # Threads follow the allocation: torch would otherwise start one per visible core in every task.
            setup=[f"export OMP_NUM_THREADS={res.cpus_per_task}", *res.setup],
            **({"dependency": dependency} if dependency else {}),
            **({"additional_parameters": extra} if extra else {}),
        )
        return ex
    if backend == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=res.time_min, tasks_per_node=res.tasks_per_node, gpus_per_node=0)
        return ex
    if backend == "debug":
        return submitit.DebugExecutor(folder=folder)
    raise UserError(f"unknown backend '{backend}'; expected one of auto, slurm, local, debug")


def array_id(job_id: str) -> str:
    """'1234_5' -> '1234': afterok on the array id waits for every task of the array."""
    return job_id.split("_", 1)[0]


def sacct_states(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """State, elapsed time and exit code for Slurm job ids (array tasks as '1234_5')."""
    if not job_ids:
        return {}
    ids = sorted({array_id(j) for j in job_ids})
    cmd = ["sacct", "-X", "-n", "-P", "-o", "JobID,State,Elapsed,ExitCode", "-j", ",".join(ids)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise UserError(f"sacct failed ({err}); is Slurm accounting (slurmdbd) reachable?") from None
    states: dict[str, dict[str, str]] = {}
    for line in out.splitlines():
        jid, state, elapsed, code = (line.split("|") + ["", "", "", ""])[:4]
        state = state.split()[0] if state else "UNKNOWN"  # 'CANCELLED by 0' -> 'CANCELLED'
        if "_[" in jid:  # a pending remainder of an array: '1234_[2-3]'
            base, rng = jid.split("_[", 1)
            for part in rng.rstrip("]").split("%")[0].split(","):
                lo, _, hi = part.partition("-")
                for k in range(int(lo), int(hi or lo) + 1):
                    states[f"{base}_{k}"] = {"state": state, "elapsed": elapsed, "exit": code}
        else:
            states[jid] = {"state": state, "elapsed": elapsed, "exit": code}
    return states
