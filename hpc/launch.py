"""python -m hpc.launch SWEEP.yaml: validate a sweep, plan it, and submit it to Slurm or run it locally.

On Slurm every job group goes in as one array (several when it has more tasks than the cluster's MaxArraySize
allows), chained to the groups it needs with afterok. Locally (and in the debug backend) groups run in dependency
order and the launcher waits. Tasks whose output already exists are
not submitted again, so an interrupted sweep is finished by relaunching the same command.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from fluidperc.atomic import write_text
from hpc import manifest as mf
from hpc.backends import (
    BACKENDS,
    SLURM_ACTIVE,
    Limits,
    array_id,
    get_backend,
    make_executor,
    queued_jobs,
    resolve_backend,
)
from hpc.errors import UserError, run_cli
from hpc.estimate import estimate
from hpc.lock import LaunchLocks
from hpc.pending import stuck_message, wait_unless_stuck
from hpc.plan import JobGroup, Task, default_run_dir, format_plan
from hpc.spec import load_sweep
from hpc.stages import plan_sweep
from hpc.stages.datagen import check_writable, data_dir
from hpc.watchdog import LAUNCHER_PID, local_job

_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*")


def failure_summary(exc: BaseException) -> str:
    """The exception line of a job's traceback (submitit wraps it in a long FailedJobError text)."""
    from submitit.core import utils as errors

    if isinstance(exc, errors.UncompletedJobError) and not isinstance(exc, errors.FailedJobError):
        return "the job ended without a result (cancelled, timed out, out of memory or killed)"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    hits = [ln for ln in lines if _ERROR_LINE.match(ln)]
    if hits:
        return hits[-1]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def submit_with_threads(ex: Any, group: JobGroup, task: Task, backend: str) -> Any:
    """Submit a local job whose torch uses ``cpus_per_task`` threads: jobs running side by side would otherwise
    each start one thread per core and oversubscribe the machine. The child inherits the environment, and a local
    job dies with this launcher (hpc.watchdog.local_job)."""
    if get_backend(backend).in_process:
        return ex.submit(group.target(), *task.args)
    env = {"OMP_NUM_THREADS": str(group.resources.cpus_per_task), LAUNCHER_PID: str(os.getpid())}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return ex.submit(local_job, group.target(), *task.args)
    finally:
        for k, v in old.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def ensure_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UserError(
            f"the run directory {run_dir} is not writable ({err.strerror}); choose another with --out. "
            "Nothing was submitted."
        ) from None


class Launch:
    """One launch of a sweep: submits pending tasks and records them in the manifest as it goes."""

    def __init__(self, run_dir: Path, sweep_name: str, backend: str, job_prefix: str, groups: list[JobGroup]):
        self.run_dir = run_dir
        self.backend = backend
        self.job_prefix = job_prefix
        self.manifest = mf.read(run_dir)
        self.previous = mf.latest_jobs(self.manifest)
        # what this launch planned, recorded before anything is prepared or submitted (hpc.status reads it)
        self.entry: dict[str, Any] = {"backend": backend, "started": mf.now(), "host": socket.gethostname(),
                                      "pid": os.getpid(), "plan": [g.record() for g in groups], "groups": []}
        self.manifest["sweep"] = sweep_name
        self.manifest["launches"].append(self.entry)
        self.failures: list[str] = []
        self.in_flight: list[tuple[str, Task, str]] = []  # (group, task, job id) still queued from an earlier launch
        self.limits: Limits | None = None
        self._states: dict[str, dict[str, str]] | None = None
        self.save()

    def save(self) -> None:
        mf.write(self.run_dir, self.manifest)

    def record(self, group: JobGroup, skipped: int, tasks: list[dict[str, Any]], note: str = "") -> dict[str, Any]:
        item = {
            "name": group.name,
            "stage": group.stage,
            "after": group.after,
            "resources": group.resources.model_dump(),
            "already_done": skipped,
            "tasks": tasks,
            "note": note,
        }
        self.entry["groups"].append(item)
        self.save()
        return item

    # --- Slurm: submit everything, chained with afterok ---------------------------------------------------
    def _previous_states(self) -> dict[str, dict[str, str]]:
        """The scheduler's state of the earlier launches' jobs, asked once per launch."""
        if self._states is None:
            old_ids = [v["job_id"] for (g, _), v in self.previous.items() if v["backend"] == self.backend]
            self._states = (get_backend(self.backend).states(old_ids) or {}) if old_ids else {}
        return self._states

    def check_limits(self, groups: list[JobGroup]) -> Limits:
        """The scheduler's limits, read once per launch; refuses (before anything is prepared or submitted) a
        launch that would queue more jobs than they allow. Tasks still queued from an earlier launch are not
        submitted again, so they do not count twice."""
        if self.limits is None:
            states = self._previous_states()
            active = {v["job_id"] for v in self.previous.values()
                      if states.get(v["job_id"], {}).get("state") in SLURM_ACTIVE}
            self.limits = get_backend(self.backend).limits()
            check_job_limits(self.limits, sum(1 for g in groups for t in g.pending
                                              if (self.previous.get((g.name, t.label)) or {}).get("job_id") not in active))
            self.entry["limits"] = self.limits.describe()
        return self.limits

    def submit_slurm(self, groups: list[JobGroup]) -> dict[str, list[Any]]:
        backend = get_backend(self.backend)
        limits = self.check_limits(groups)
        states = self._previous_states()
        submitted: dict[str, list[str]] = {}
        jobs_by_group: dict[str, list[Any]] = {}
        for group in groups:
            todo: list[Task] = []
            in_flight: list[str] = []
            stale: list[str] = []
            # A queued job from an earlier launch waits on that launch's jobs. When this launch submits its
            # dependencies again, the old ones failed: Slurm will cancel it (kill_on_invalid_dep), so it is
            # withdrawn now and submitted again behind the new dependencies.
            requeued_deps = any(name in jobs_by_group for name in group.after)
            for task in group.pending:
                prev = self.previous.get((group.name, task.label))
                state = states.get(prev["job_id"], {}).get("state") if prev and prev["backend"] == self.backend else None
                if state == "PENDING" and requeued_deps:
                    stale.append(prev["job_id"])
                    todo.append(task)
                elif state in SLURM_ACTIVE:
                    in_flight.append(prev["job_id"])
                    self.in_flight.append((group.name, task, prev["job_id"]))
                else:
                    todo.append(task)
            if stale:
                backend.cancel(stale)
                print(f"{group.name}: withdrew {len(stale)} queued job(s) of an earlier launch whose dependencies "
                      f"failed ({', '.join(stale)}); submitting again")
            deps = sorted({array_id(j) for name in group.after for j in submitted.get(name, [])})
            submitted[group.name] = list(in_flight)
            if not todo:
                note = f"{len(in_flight)} still queued or running from an earlier launch" if in_flight else ""
                self.record(group, len(group.tasks) - len(group.pending), [], note)
                continue
            res = group.resources
            if deps:
                res = res.model_copy(update={"extra_sbatch": {**res.extra_sbatch, "kill_on_invalid_dep": "yes"}})
            ex = make_executor(
                self.backend,
                self.run_dir / "logs" / group.name,
                f"{self.job_prefix}.{group.name}",
                res,
                dependency=("afterok:" + ":".join(deps)) if deps else None,
            )
            target = group.target()
            jobs: list[Any] = []
            for size in limits.array_sizes(len(todo)):  # one array, or several within MaxArraySize
                with ex.batch():
                    jobs += [ex.submit(target, *task.args) for task in todo[len(jobs):len(jobs) + size]]
            submitted[group.name] += [j.job_id for j in jobs]
            jobs_by_group[group.name] = list(zip(todo, jobs))
            arrays = list(dict.fromkeys(array_id(j.job_id) for j in jobs))
            self.record(
                group,
                len(group.tasks) - len(group.pending),
                [{"label": t.label, "job_id": j.job_id, "state": "SUBMITTED"} for t, j in zip(todo, jobs)],
                note=(f"afterok:{':'.join(deps)}" if deps else "")
                + (f" {len(arrays)} arrays ({limits.describe()})" if len(arrays) > 1 else ""),
            )
            if len(arrays) > 1:
                kind = f"{len(jobs)} tasks as {len(arrays)} arrays {', '.join(arrays)} (MaxArraySize {limits.max_array_tasks})"
            else:
                kind = f"array {arrays[0]} of {len(jobs)}" if len(jobs) > 1 else f"job {jobs[0].job_id}"
            print(f"submitted {group.name}: {kind}" + (f" (afterok {', '.join(deps)})" if deps else ""))
        return jobs_by_group

    def wait_slurm(self, groups: list[JobGroup], jobs_by_group: dict[str, list[Any]]) -> None:
        failed: set[str] = set()
        held: set[str] = set()  # groups with a job that will not start by itself: dependents stay queued
        for group in groups:
            pairs = jobs_by_group.get(group.name, [])
            blocked = [a for a in group.after if a in failed]
            if blocked:  # Slurm cancels them (kill_on_invalid_dep); waiting would only add sacct polls
                failed.add(group.name)
                self.failures.append(f"{group.name}: not run, because {', '.join(blocked)} failed")
                continue
            waiting_on = [a for a in group.after if a in held]
            if waiting_on:
                held.add(group.name)
                self.failures.append(f"{group.name}: still queued, after {', '.join(waiting_on)}, whose jobs will "
                                     "not start by themselves")
                continue
            n_fail = len(self.failures)
            # jobs of an earlier launch this one counts on are waited for as well: --wait means all of it is done
            backend = get_backend(self.backend)
            pairs = pairs + [(task, backend.job(self.run_dir / "logs" / group.name, job_id))
                             for name, task, job_id in self.in_flight if name == group.name]
            for task, job in tqdm(pairs, desc=f"waiting {group.name}", unit="job", file=sys.stderr, leave=False):
                reason = wait_unless_stuck(job, note=lambda line: tqdm.write(f"note: {line}", file=sys.stderr))
                if reason:
                    held.add(group.name)
                    self.failures.append(stuck_message(f"{group.name} task {task.label}", str(job.job_id), reason))
                    continue
                self._collect(group.name, task, job)
            if len(self.failures) > n_fail and group.name not in held:
                failed.add(group.name)

    # --- local and debug: run group by group, waiting ----------------------------------------------------
    def run_local(self, groups: list[JobGroup]) -> None:
        failed_groups: set[str] = set()
        for group in groups:
            done_before = len(group.tasks) - len(group.pending)
            blocked = [a for a in group.after if a in failed_groups]
            if blocked:
                failed_groups.add(group.name)
                self.record(group, done_before, [], note=f"not run: {', '.join(blocked)} failed")
                continue
            if not group.pending:
                self.record(group, done_before, [])
                continue
            tasks: list[dict[str, Any]] = []  # the manifest entry holds this list and sees it grow
            self.record(group, done_before, tasks)
            ex = make_executor(self.backend, self.run_dir / "logs" / group.name, group.name, group.resources)
            slots = get_backend(self.backend).slots(group.resources)
            queue = list(group.pending)
            running: list[tuple[Task, Any, dict[str, Any]]] = []
            n_fail = len(self.failures)
            with tqdm(total=len(queue), desc=group.name, unit="task", file=sys.stderr) as bar:
                while queue or running:
                    while queue and len(running) < slots:
                        task = queue.pop(0)
                        job = submit_with_threads(ex, group, task, self.backend)
                        row = {"label": task.label, "job_id": str(job.job_id), "state": "RUNNING"}
                        tasks.append(row)
                        running.append((task, job, row))
                    self.save()
                    in_process = get_backend(self.backend).in_process
                    finished = [r for r in running if in_process or r[1].done()]
                    if not finished:
                        time.sleep(0.2)
                        continue
                    for task, job, row in finished:
                        running.remove((task, job, row))
                        row["state"] = self._collect(group.name, task, job)
                        bar.update(1)
            self.save()
            if len(self.failures) > n_fail:
                failed_groups.add(group.name)

    def _collect(self, group_name: str, task: Task, job: Any) -> str:
        try:
            job.results()  # every task of a multi-task (DDP) job
            return "COMPLETED"
        except Exception as exc:  # the job's own failure, reported below, never re-raised
            log = getattr(getattr(job, "paths", None), "stderr", None)
            self.failures.append(
                f"{group_name} task {task.label} (job {job.job_id}) failed: {failure_summary(exc)}"
                + (f" [log: {log}]" if log else "")
            )
            return "CANCELLED" if "cancel" in str(exc).lower() else "FAILED"


def check_job_limits(limits: Limits, n_jobs: int) -> None:
    """Refuse, before anything is submitted, a launch that the scheduler would refuse part-way: more jobs than
    this user may queue (MaxSubmitJobs) or the controller may hold (MaxJobCount), counting what is queued now."""
    for limit, user_only, name in ((limits.max_submit_jobs, True, "MaxSubmitJobs, per user"),
                                   (limits.max_job_count, False, "MaxJobCount, the whole cluster")):
        if limit is None:
            continue
        queued = queued_jobs(user_only)
        if n_jobs + queued > limit:
            raise UserError(
                f"this launch would queue {n_jobs} job(s) (each array task counts as one) beside the {queued} "
                f"already queued, but the cluster allows {limit} ({name}). Launch part of the sweep first "
                "(KEY=VALUE overrides, e.g. fewer seeds or more sims_per_task) and relaunch the rest later; a "
                "relaunch submits only what is missing. Nothing was submitted."
            )


def dry_run_limits(groups: list[JobGroup], backend: str) -> str:
    """What the dry run says of the cluster's limits: which groups go in as several arrays. Only Slurm has them;
    a dry run on a machine without it says nothing."""
    chosen = get_backend(resolve_backend("auto") if backend == "auto" else backend)
    if not chosen.scheduler:
        return ""
    ok, why = chosen.reachable()
    if not ok:  # a preview on a machine without the cluster still shows the plan
        return f"cluster limits: not read ({why}); a group larger than the cluster's MaxArraySize goes in as several arrays"
    limits = chosen.limits()
    lines = [f"cluster limits: {limits.describe()}"]
    for group in groups:
        sizes = limits.array_sizes(len(group.pending))
        if len(sizes) > 1:
            lines.append(f"  {group.name}: {len(group.pending)} tasks go in as {len(sizes)} arrays of "
                         f"{', '.join(map(str, sizes))} tasks, followed and relaunched as one group")
    return "\n".join(lines)


def lock_dirs(sweep, run_dir: Path) -> dict[Path, str]:
    """The directories a launch writes and must not share with a concurrent launch: the run directory, and the
    data directory when the sweep generates data into it."""
    dirs = {run_dir.resolve(): "the run directory"}
    if sweep.datagen is not None:
        root = data_dir(sweep)
        check_writable(root)
        dirs.setdefault(root, "the data directory")
    return dirs


def launch(
    sweep_path: str | Path,
    backend: str = "auto",
    out: str | Path | None = None,
    dry_run: bool = False,
    wait: bool = False,
    lock_timeout: float | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    calibrate: bool = False,
) -> int:
    """Validate, plan and submit a sweep (with command-line ``KEY=VALUE`` overrides). Returns the exit status.
    ``calibrate``: a dry run whose cost estimate times a few steps of each kind of job here (hpc.estimate)."""
    sweep = load_sweep(sweep_path, overrides)
    run_dir = Path(out) if out else default_run_dir(sweep.name)
    try:
        return _launch(sweep, sweep_path, run_dir, backend, dry_run or calibrate, wait, lock_timeout, list(overrides),
                       calibrate)
    except UserError as err:  # every refusal names the sweep file it is about
        if str(sweep_path) in str(err):
            raise
        raise UserError(f"{sweep_path}: {err}") from None


def _launch(sweep, sweep_path, run_dir: Path, backend: str, dry_run: bool, wait: bool,
            lock_timeout: float | None, overrides: list[str], calibrate: bool = False) -> int:
    if backend != "auto":
        get_backend(backend)  # the name, also for a dry run (the sweep's plugins may register it); reachability below
    if dry_run:
        if sweep.missing_weights == "fail":
            # A preview shows the whole plan; missing weights are listed as notes instead of stopping it.
            sweep = sweep.model_copy(update={"missing_weights": "skip"})
            print("dry run: cells whose weights are missing are noted below; with missing_weights: fail a real "
                  "launch stops before submitting until they are fetched (python -m fluidperc.weights fetch)")
        groups = plan_sweep(sweep, run_dir, dry_run=True)
        print(f"sweep {sweep.name} ({sweep_path}" + "".join(f" {o}" for o in overrides)
              + f") -> {run_dir}  [dry run: nothing is submitted]")
        print(format_plan(groups, cells=True))
        limits = dry_run_limits(groups, backend)
        if limits:
            print(limits)
        cost = estimate(groups, calibrated=calibrate)
        if cost:
            print(cost)
        return 0
    backend = resolve_backend(backend)
    # A first, read-only plan finds bad input before anything is created (a refused launch leaves no run
    # directory); the plan that counts is made again below, under the locks, from the stores as they are then.
    with contextlib.redirect_stdout(io.StringIO()):
        plan_sweep(sweep, run_dir)
    dirs = lock_dirs(sweep, run_dir)
    ensure_writable(run_dir)
    with LaunchLocks(dirs, lock_timeout):
        return launch_locked(sweep, run_dir, backend, wait, overrides)


def resolved_sweep_text(sweep, overrides: list[str]) -> str:
    """RUN_DIR/sweep.yaml: the sweep as validated (defaults filled in, overrides applied), saying which overrides
    made it; it reloads as a sweep file."""
    head = "".join(f"# command-line override: {o}\n" for o in overrides)
    return head + yaml.safe_dump(sweep.model_dump(mode="json"), sort_keys=False)


def launch_locked(sweep, run_dir: Path, backend: str, wait: bool, overrides: list[str] = ()) -> int:
    """Plan, prepare and submit (or run) while this launch holds the run and data directories."""
    groups = plan_sweep(sweep, run_dir)
    write_text(run_dir / "sweep.yaml", resolved_sweep_text(sweep, list(overrides)))
    if not any(g.pending for g in groups):
        print(f"sweep {sweep.name}: every task is already done in {run_dir}; nothing to submit.")
        return 0
    print(f"sweep {sweep.name} -> {run_dir} on the {backend} backend")
    print(format_plan(groups, cells=True))
    run = Launch(run_dir, sweep.name, backend, job_prefix=sweep.name, groups=groups)
    run.entry["overrides"] = list(overrides)
    run.save()
    if get_backend(backend).scheduler:
        run.check_limits(groups)
    for group in groups:  # also for groups with nothing left: preparing is idempotent and clears dead temporaries
        if group.prepare is not None:
            try:
                group.prepare()
            except OSError as err:  # a full or read-only file system while creating the stores
                raise UserError(f"{group.name}: preparing its output failed: {err.strerror or err} "
                                f"({err.filename or ''}). Free space or fix the permissions and relaunch; nothing was "
                                "submitted.") from None
    if get_backend(backend).scheduler:
        jobs = run.submit_slurm(groups)
        if not wait:
            print(f"follow it with: python -m hpc.status {run_dir}")
            return 0
        run.wait_slurm(groups, jobs)
    else:
        run.run_local(groups)
    if run.failures:
        print(f"{len(run.failures)} task(s) did not finish; relaunch the same command to retry only those (it waits "
              "for what is still queued):", file=sys.stderr)
        for line in run.failures:
            print(f"  - {line}", file=sys.stderr)
        return 1
    print(f"sweep {sweep.name}: done. Results under {run_dir}")
    report = run_dir / "report" / "report.md"
    if sweep.tune is not None and (run_dir / "tune.zarr").exists():
        from fluidperc.analysis.tables import markdown_table  # xarray, matplotlib: only to sum up
        from fluidperc.analysis.tuning import best_table, load_tune  # a finished run

        print("best configuration per loss (Tune):\n" + markdown_table(*best_table(load_tune(run_dir))))
    if sweep.evaluate is not None and report.exists():
        from fluidperc.analysis.report import main_table  # torch, xarray, matplotlib: a finished run

        print(f"report: {report}\n{main_table(run_dir)}")
    elif report.exists():
        print(f"report: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hpc.launch",
        description="Validate a sweep file, print its plan, and submit it (Slurm arrays chained with afterok) "
        "or run it locally. Relaunching finishes only the missing work.",
    )
    p.add_argument("sweep", help="the sweep YAML file, e.g. sweeps/demo.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override sweep keys (dotted paths, YAML values), e.g. train.settings.steps=200 "
                   "resources.partition=gpu-a100 datagen.datasets.0.steps=100; validated like the file")
    p.add_argument(
        "--backend",
        default=os.environ.get("FLUIDPERC_BACKEND", "auto"),
        metavar="BACKEND",
        help=f"auto (slurm when sbatch is on PATH and sinfo answers, else local), {', '.join(BACKENDS)} (debug runs "
        "jobs in this process), or a backend that a module under the sweep's plugins: registers "
        "(hpc.backends.register_backend); checked once the sweep is loaded",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan (stages, arrays, resources, which cells "
                   "share a job) and its estimated cost, and submit nothing")
    p.add_argument("--estimate", action="store_true", help="a dry run whose cost estimate is calibrated here: a few "
                   "training steps of each kind of job and one evaluation are timed on this machine (it needs the "
                   "stores the cells read)")
    p.add_argument("--out", help="run directory (default: runs/<sweep name>)")
    p.add_argument("--wait", action="store_true", help="on Slurm, wait for every job and report failures; a job "
                   "that will not start by itself (held, or over its partition's limits) is reported, not waited on")
    p.add_argument("--lock-timeout", type=float, default=None, metavar="SECONDS",
                   help="while another launch uses the same run or data directory, wait at most this long "
                   "(default: wait until it has finished; 0: stop at once)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # overrides may come after the options too
    return launch(args.sweep, backend=args.backend, out=args.out, dry_run=args.dry_run, wait=args.wait,
                  lock_timeout=args.lock_timeout, overrides=args.overrides, calibrate=args.estimate)


if __name__ == "__main__":
    run_cli(main, "hpc.launch")
