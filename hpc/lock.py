"""One launch at a time per run directory and per data directory.

A launch holds an exclusive POSIX advisory lock (``fcntl.lockf``) on ``DIR/.fluidperc-launch.lock`` from before
it plans until it has submitted (Slurm) or finished (local), and writes its host, pid and start time into the
file, so that a second launch can say whom it waits for. The kernel drops the lock when the process dies, kill -9
included: a lock is never stale. Across machines the lock holds only where the file system carries POSIX locks
between clients (NFS v4, or v3 with lockd; Lustre mounted with ``-o flock``; GPFS); docs/sweeps.md says so.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from hpc.errors import UserError

LOCK_NAME = ".fluidperc-launch.lock"


def _holder(text: str) -> str | None:
    try:
        info = json.loads(text)
        return f"host {info['host']}, pid {info['pid']}, started {info['started']} ({info.get('command', '')})"
    except (ValueError, KeyError, TypeError):
        return None  # the holder has the lock but has not written its details yet


class LaunchLock:
    def __init__(self, directory: Path, what: str):
        self.path = Path(directory) / LOCK_NAME
        self.what = what
        self.file: TextIO | None = None

    def acquire(self, timeout: float | None = None, poll: float = 0.5) -> None:
        """Take the lock; while another launch holds it, say so once and wait (up to ``timeout`` seconds)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        start = time.monotonic()
        told = False
        while True:
            try:
                fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                f.seek(0)
                holder = _holder(f.read())
                if holder is None and time.monotonic() - start < 2.0:  # it writes them right after locking
                    time.sleep(0.05)
                    continue
                holder = holder or "a launch that has not written its details"
                if timeout is not None and time.monotonic() - start >= timeout:
                    f.close()
                    raise UserError(
                        f"{self.what} {self.path.parent} is in use by another launch ({holder}); it holds "
                        f"{self.path}. Relaunch when it has finished (a relaunch finishes only the missing work), or "
                        "give --lock-timeout more seconds to wait. Nothing was submitted."
                    ) from None
                if not told:
                    print(f"waiting for the other launch using {self.what} {self.path.parent}: {holder}",
                          file=sys.stderr, flush=True)
                    told = True
                time.sleep(poll)
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "command": " ".join(sys.argv)}))
        f.flush()
        self.file = f
        if told:
            print(f"took over {self.what} {self.path.parent} after {time.monotonic() - start:.0f} s", file=sys.stderr)

    def release(self) -> None:
        if self.file is not None:
            fcntl.lockf(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None


class LaunchLocks:
    """Several locks taken in path order (two launches never hold one each and wait for the other)."""

    def __init__(self, dirs: dict[Path, str], timeout: float | None):
        self.locks = [LaunchLock(d, what) for d, what in sorted(dirs.items(), key=lambda kv: str(kv[0]))]
        self.timeout = timeout

    def __enter__(self) -> "LaunchLocks":
        taken = []
        try:
            for lock in self.locks:
                lock.acquire(self.timeout)
                taken.append(lock)
        except BaseException:
            for lock in reversed(taken):
                lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for lock in reversed(self.locks):
            lock.release()
