"""Job backends: Slurm through submitit, submitit's LocalExecutor, and the in-process DebugExecutor.

The backend owns every scheduler parameter; stages only say what resources one job needs.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fluidperc.registry import Registry
from hpc.errors import UserError
from hpc.pending import queue_rows
from hpc.spec import Resources

if TYPE_CHECKING:
    import submitit

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


@dataclass(frozen=True)
class Limits:
    """What a scheduler lets one launch queue. Slurm's MaxArraySize N allows array indices 0..N-1, so N tasks
    per array; MaxJobCount bounds the jobs the controller holds, MaxSubmitJobs (an association's) one user's queued
    and running jobs, each array task counting as one job."""

    max_array_tasks: int | None = None
    max_job_count: int | None = None
    max_submit_jobs: int | None = None

    def array_sizes(self, n: int) -> list[int]:
        """How ``n`` tasks of one group are split into arrays (one array when the cluster allows it)."""
        size = self.max_array_tasks or n
        return [min(size, n - start) for start in range(0, n, size)] if n else []

    def describe(self) -> str:
        parts = [f"MaxArraySize={self.max_array_tasks}" if self.max_array_tasks else "",
                 f"MaxJobCount={self.max_job_count}" if self.max_job_count else "",
                 f"MaxSubmitJobs={self.max_submit_jobs}" if self.max_submit_jobs else ""]
        return ", ".join(p for p in parts if p) or "no limits known"


def _read_config_int(text: str, key: str) -> int | None:
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            value = value.strip().split()[0] if value.strip() else ""
            return int(value) if value.isdigit() and int(value) > 0 else None
    return None


def slurm_limits(timeout_s: float = 30.0) -> Limits:
    """MaxArraySize and MaxJobCount from ``scontrol show config``, and this user's MaxSubmitJobs from the
    accounting association when sacctmgr answers (many clusters set none)."""
    try:
        config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as err:
        raise UserError(f"scontrol show config failed ({err}); the launcher reads the cluster's array and job "
                        "limits from it. Nothing was submitted.") from None
    if config.returncode != 0:
        raise UserError("scontrol show config failed (" + " ".join(config.stderr.split())[:200] + "); the launcher "
                        "reads the cluster's array and job limits from it. Nothing was submitted.")
    submit = None
    try:
        assoc = subprocess.run(["sacctmgr", "-n", "-P", "show", "assoc", f"user={getpass.getuser()}",
                                "format=MaxSubmitJobs"], capture_output=True, text=True, timeout=timeout_s)
        values = [int(v) for v in assoc.stdout.split() if v.isdigit()] if assoc.returncode == 0 else []
        submit = min(values) if values else None
    except (OSError, subprocess.SubprocessError):
        pass  # no accounting: no per-user limit to know of
    max_array = _read_config_int(config.stdout, "MaxArraySize")
    return Limits(max_array_tasks=max_array, max_job_count=_read_config_int(config.stdout, "MaxJobCount"),
                  max_submit_jobs=submit)


def queued_jobs(user_only: bool, timeout_s: float = 30.0) -> int:
    """Jobs (array tasks one each) the controller holds now: this user's, or everyone's."""
    cmd = ["squeue", "-h", "-r", "-o", "%i"] + (["-u", getpass.getuser()] if user_only else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return 0
    return len(out.stdout.split()) if out.returncode == 0 else 0


class Backend:
    """Where jobs run, as a plugin (submitit's executors are the model). ``scheduler``: jobs are queued with
    their dependencies and the launcher returns (Slurm); otherwise the launcher runs the groups in dependency
    order and waits. A new backend is one subclass and a :func:`register_backend` call."""

    name = ""
    scheduler = False
    in_process = False  # jobs run inside the launcher (pdb works); each is done when submit returns

    def reachable(self) -> tuple[bool, str]:
        return True, "always"

    def limits(self) -> Limits:
        """The scheduler's limits on what one launch may queue (none when the launcher runs the jobs itself)."""
        return Limits()

    def executor(self, folder: Path, job_name: str, res: Resources, dependency: str | None = None) -> submitit.Executor:
        raise NotImplementedError

    def slots(self, res: Resources) -> int:
        """How many jobs of this shape run at once when the launcher runs them itself."""
        return 1

    def states(self, job_ids: list[str]) -> dict[str, dict[str, str]] | None:
        """Live state, elapsed time and exit code per job id, or None when the manifest's record is the state."""
        return None

    def cancel(self, job_ids: list[str]) -> None:
        """Withdraw queued jobs that can no longer run as submitted (only schedulers queue jobs)."""

    def job(self, folder: Path, job_id: str) -> submitit.Job:
        """A handle on a job an earlier launch submitted, to wait for it and read its result."""
        raise NotImplementedError(f"the {self.name} backend cannot follow jobs of an earlier launch")


class SlurmBackend(Backend):
    name = "slurm"
    scheduler = True

    def reachable(self) -> tuple[bool, str]:
        return slurm_reachable()

    def limits(self) -> Limits:
        return slurm_limits()

    def executor(self, folder, job_name, res, dependency=None):
        import submitit

        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=res.max_requeues)
        extra = {k.replace("-", "_"): v for k, v in res.extra_sbatch.items()}
        ex.update_parameters(
            job_name=job_name,
            time=res.time_min,
            nodes=res.nodes,
            ntasks_per_node=res.tasks_per_node,
            cpus_per_task=res.cpus_per_task,
            array_parallelism=res.array_parallelism,
            signal_delay_s=res.signal_delay_s,  # USR2 this long before the limit: checkpoint, then requeue
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

    def states(self, job_ids):
        return sacct_states(job_ids)

    def job(self, folder, job_id):
        import submitit

        return submitit.SlurmJob(folder, job_id)

    def cancel(self, job_ids):
        if not job_ids:
            return
        try:
            subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as err:  # harmless: Slurm cancels them itself (kill_on_invalid_dep)
            print(f"note: scancel {' '.join(job_ids)} failed ({err}); Slurm cancels them once it sees their "
                  "dependencies failed")


class LocalBackend(Backend):
    name = "local"

    def executor(self, folder, job_name, res, dependency=None):
        import submitit

        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=res.time_min, tasks_per_node=res.tasks_per_node, gpus_per_node=0)
        return ex

    def slots(self, res):
        return local_slots(res)


class DebugBackend(Backend):
    name = "debug"
    in_process = True

    def executor(self, folder, job_name, res, dependency=None):
        import submitit

        return submitit.DebugExecutor(folder=folder)


AUTO_ORDER: list[str] = []  # what `--backend auto` tries, in order
ENTRY_POINT_GROUP = "fluidperc.backends"


def _builtin() -> None:
    register_backend(SlurmBackend(), auto=True)
    register_backend(LocalBackend(), auto=True)
    register_backend(DebugBackend())


BACKENDS: Registry[Backend] = Registry("backend", ENTRY_POINT_GROUP, key=lambda b: b.name,
                                       describe=lambda b: f"{type(b).__module__}:{type(b).__qualname__}",
                                       builtin=_builtin)


def register_backend(backend: Backend, auto: bool = False) -> Backend:
    """Add a backend (a sweep plugin's, or an installed package's through the entry point group
    fluidperc.backends); ``auto``: `--backend auto` may pick it, after the built-in ones."""
    BACKENDS.register(backend)
    if auto and backend.name not in AUTO_ORDER:
        AUTO_ORDER.append(backend.name)
    return backend


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise UserError(f"unknown backend '{name}'; expected one of auto, {', '.join(BACKENDS)}")
    return BACKENDS[name]


def resolve_backend(requested: str) -> str:
    """'auto' -> the first reachable backend of AUTO_ORDER (Slurm when sinfo answers, else local); a named one
    must be reachable."""
    if requested == "auto":
        BACKENDS.table()  # the built-in and installed backends are in AUTO_ORDER from here on
        return next(name for name in AUTO_ORDER if BACKENDS[name].reachable()[0])
    ok, why = get_backend(requested).reachable()
    if not ok:
        raise UserError(
            f"--backend {requested} was asked for, but it is not reachable ({why}). "
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
    return get_backend(backend).executor(folder, job_name, res, dependency)


def array_id(job_id: str) -> str:
    """'1234_5' -> '1234': afterok on the array id waits for every task of the array."""
    return job_id.split("_", 1)[0]


def _add_state(states: dict[str, dict[str, str]], jid: str, state: str, elapsed: str, code: str) -> None:
    state = state.split()[0] if state else "UNKNOWN"  # 'CANCELLED by 0' -> 'CANCELLED'
    if "_[" in jid:  # a pending remainder of an array: '1234_[2-3]'
        base, rng = jid.split("_[", 1)
        for part in rng.rstrip("]").split("%")[0].split(","):
            lo, _, hi = part.partition("-")
            for k in range(int(lo), int(hi or lo) + 1):
                states[f"{base}_{k}"] = {"state": state, "elapsed": elapsed, "exit": code}
    else:
        states[jid] = {"state": state, "elapsed": elapsed, "exit": code}


def sacct_states(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """State, elapsed time and exit code for Slurm job ids (array tasks as '1234_5'). Accounting learns of a job
    some seconds after it is submitted; until then the controller's queue (squeue) answers for it, so a relaunch
    right after a launch never mistakes a queued job for a lost one."""
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
        _add_state(states, *(line.split("|") + ["", "", "", ""])[:4])
    if any(j not in states for j in job_ids):  # accounting's answer alone when squeue does not answer either
        wanted = set(ids)
        for jid, state, elapsed in queue_rows(["%i", "%T", "%M"]) or []:
            if array_id(jid) in wanted and jid not in states:
                _add_state(states, jid, state, elapsed, "")
    return states
