"""Why a queued Slurm job is not running, and whether it will start without someone acting.

`--wait` would otherwise wait forever on a job that cannot start: one that Slurm holds (held by an administrator
or its user, or held after a failed launch), or one that asks for more than its partition, QOS or association
allows a job (a time limit above the partition's MaxTime, say, where EnforcePartLimits lets it in). squeue's
reason says which, so the launcher reports it and goes on; a job that waits for nodes out of service (drained,
down) may still start once they come back, so it only gets a note.
"""

from __future__ import annotations

import getpass
import subprocess
import time
from typing import Any, Callable

# squeue's reasons for a job that Slurm will not start until someone releases it. (A dependency that can never be
# met is no such case here: the launcher submits with --kill-on-invalid-dep=yes, so Slurm cancels the job.)
HELD = ("JobHeldAdmin", "JobHeldUser", "JobHoldMaxRequeue", "launch failed requeued held")
# reasons for a job that cannot start as submitted (its request is outside what it may ever get); the QOS's and
# the association's per-job limits (QOSMaxWallDurationPerJobLimit, AssocMaxCpuPerJobLimit, ...) are found by name
NEVER = ("PartitionTimeLimit", "PartitionNodeLimit", "BadConstraints", "InvalidAccount", "InvalidQOS",
         "AccountNotAllowed", "QOSNotAllowed")
# reasons for a job that waits on nodes or a partition out of service
NO_NODES = ("ReqNodeNotAvail", "Nodes required for job are DOWN, DRAINED", "PartitionDown", "PartitionInactive",
            "NodeDown")


def queue_rows(fields: list[str], timeout_s: float = 30.0) -> list[list[str]] | None:
    """This user's queued jobs as squeue gives them, an array's tasks one row each, each row the asked fields
    ('%i', '%T', ...); None when squeue does not answer. The whole queue, for the callers to filter: squeue -j
    fails outright when one of the ids has left the controller."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "|".join(fields)],
                             capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    n = len(fields)
    return [(line.split("|", n - 1) + [""] * n)[:n] for line in out.stdout.splitlines()]


def pending_reasons(job_ids: list[str]) -> dict[str, str]:
    """squeue's reason for each of these jobs that is pending ('1234' or an array task '1234_5'); jobs that run,
    have left the queue, or that squeue does not answer for are absent."""
    wanted = set(job_ids)
    return {jid: reason.strip() for jid, state, reason in queue_rows(["%i", "%T", "%r"]) or []
            if jid in wanted and state == "PENDING"}


def pending_reason(job_id: str) -> str:
    """One job's reason; "" when it is not pending (the caller then simply waits on, as before)."""
    return pending_reasons([job_id]).get(job_id, "")


def nodes_out_of_service(timeout_s: float = 30.0) -> str:
    """The cluster's drained, draining or down nodes with the reasons their administrator gave (`sinfo -R`), as
    'vm (drained: disk failed)'; "" when there are none or sinfo does not answer."""
    try:
        out = subprocess.run(["sinfo", "-h", "-R", "-o", "%N|%T|%E"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return ""
    rows = [line.split("|", 2) for line in out.stdout.splitlines() if out.returncode == 0 and line.count("|") >= 2]
    return ", ".join(f"{nodes} ({state}: {why})" for nodes, state, why in rows)


def is_held(reason: str) -> bool:
    return reason.startswith(HELD)


def cannot_start(reason: str) -> bool:
    """A request outside what the partition, QOS or association allows one job: it pends until it is changed."""
    return reason.startswith(NEVER) or (reason.startswith(("QOSMax", "AssocMax")) and "PerJob" in reason)


def stuck_message(label: str, job_id: str, reason: str) -> str:
    """What the launcher and hpc.status say of a job that will not start by itself, with what frees it."""
    if is_held(reason):
        return (f"{label} (job {job_id}) is held by Slurm ({reason}): it will not start until it is released "
                f"(`scontrol release {job_id}`); relaunch with --wait to wait for it then")
    return (f"{label} (job {job_id}) cannot start as submitted ({reason}): it asks for more than its partition, "
            f"QOS or association allows one job (`scontrol show partition`, `sacctmgr show qos` list the limits); "
            f"cancel it (`scancel {job_id}`), lower the sweep's resources and relaunch")


def waits_for_nodes(reason: str) -> bool:
    return reason.startswith(NO_NODES)


def wait_unless_stuck(job: Any, note: Callable[[str], None], first_s: float = 2.0, most_s: float = 30.0,
                      reason_of: Callable[[str], str] = pending_reason,
                      nodes_out: Callable[[], str] = nodes_out_of_service) -> str:
    """Block until submitit's ``job`` is done and return "", or return Slurm's reason as soon as the job is held
    or found unable to start as submitted. The queue is asked at 0, 2, 6, 14, ... s, then every ``most_s``: a
    held job is found within seconds of the hold, and a long wait costs one squeue call each half minute. ``note``
    gets one line per new reason that waits for nodes out of service."""
    noted: set[str] = set()
    interval, next_check, last = first_s, 0.0, ""
    while not job.done():
        now = time.monotonic()
        if now >= next_check:
            reason = reason_of(str(job.job_id))
            if is_held(reason) or (cannot_start(reason) and reason == last):
                return reason  # a hold is someone's act; a limit counts once two checks agree (no passing state)
            last = reason
            if waits_for_nodes(reason) and reason not in noted:
                noted.add(reason)
                out = nodes_out() or "none listed by `sinfo -R`"
                note(f"job {job.job_id} is pending: {reason}. Nodes out of service: {out}. It starts once they are "
                     "back in service; --wait goes on waiting.")
            next_check, interval = now + interval, min(most_s, interval * 2)
        time.sleep(0.5)
    return ""
