"""A local-backend job dies with the launcher that started it (no submitit here: the launcher imports this
while planning)."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable

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
