"""Run the suite as its groups side by side: one pytest process per group (tests/conftest.py, ``group_of``).

Why: tests that share the single-node cluster, or the multi-node cluster and Ray, must run one at a time, and they
spend most of their time waiting on jobs; the other tests are independent and CPU-bound. pytest-xdist's loadgroup
would do this in one process, but with pytest 9.2 and pytest-xdist 3.8 it silently ignores the groups
(pytest-dev/pytest-xdist#1386). So each group gets its own process, its own base temp directory and its own log;
the "other" group spreads its modules over ``--workers`` pytest-xdist workers (loadscope: a module's tests stay
together, so its module-scoped fixtures, such as a whole local pipeline run, are made once).

Usage: python tests/run_groups.py [--workers N] [--logs DIR] [-- PYTEST_ARGS...]
Exit status: 0 when every group passed (or had nothing to run), else 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conftest import GROUPS, ROOT  # this script's directory is first on sys.path

NO_TESTS = 5  # pytest's exit status when a group collected nothing (a -k or -m filter left it empty)
HEARTBEAT_S = 60


def _command(group: str, workers: int, basetemp: Path, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", f"--test-group={group}", f"--basetemp={basetemp}",
           "-p", "no:cacheprovider"]  # three processes would overwrite each other's last-failed record
    if group == "other" and workers > 1:
        cmd += ["-n", str(workers), "--dist", "loadscope"]  # a module's fixtures (a pipeline run) made once
    return cmd + extra


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers for the 'other' group")
    parser.add_argument("--logs", type=Path, default=None, help="where each group's log goes (default: a temp dir)")
    parser.add_argument("pytest_args", nargs="*", help="passed to every group's pytest (put them after --)")
    args = parser.parse_args(argv)

    logs = args.logs or Path(tempfile.mkdtemp(prefix="fluidperc-test-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix="fluidperc-test-groups-"))
    # One torch thread per process unless told otherwise: three or four busy processes share two cores, and torch's
    # default (one thread per core) makes each spin waiting for the others (a 6 s test took 186 s that way).
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    started = time.monotonic()
    running: dict[str, tuple[subprocess.Popen, Path, float]] = {}
    for group in GROUPS:
        log = logs / f"{group}.log"
        proc = subprocess.Popen(_command(group, args.workers, temp / group, args.pytest_args), cwd=ROOT,
                                stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, env=env)
        running[group] = (proc, log, time.monotonic())
        print(f"run_groups: {group}: pytest started, log {log}", flush=True)

    results: dict[str, tuple[int, float]] = {}
    last_beat = time.monotonic()
    try:
        while running:
            time.sleep(1.0)
            for group, (proc, log, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[group]
                results[group] = (proc.returncode, time.monotonic() - t0)
                print(f"\n===== run_groups: {group}: exit {proc.returncode} after {_minutes(results[group][1])} "
                      f"({log}) =====", flush=True)
                sys.stdout.write(log.read_text(errors="replace"))
                sys.stdout.flush()
            if running and time.monotonic() - last_beat >= HEARTBEAT_S:
                last_beat = time.monotonic()
                print(f"run_groups: {_minutes(last_beat - started)}: still running: {', '.join(running)}",
                      flush=True)
    except KeyboardInterrupt:
        for proc, _, _ in running.values():
            os.killpg(proc.pid, signal.SIGINT)
        for proc, _, _ in running.values():
            proc.wait()
        print("run_groups: interrupted; the groups' logs are in", logs)
        return 1

    print(f"\nrun_groups: all groups done in {_minutes(time.monotonic() - started)}:")
    failed = []
    for group in GROUPS:
        rc, seconds = results[group]
        print(f"  {group:<18} {'passed' if rc == 0 else 'nothing to run' if rc == NO_TESTS else f'FAILED (exit {rc})'}"
              f" in {_minutes(seconds)}")
        if rc not in (0, NO_TESTS):
            failed.append(group)
    if failed:  # what the failed tests left (run directories, job logs) stays for a look
        print(f"run_groups: the groups' temp directories are kept in {temp}")
        return 1
    shutil.rmtree(temp, ignore_errors=True)  # over a gigabyte per run
    return 0


if __name__ == "__main__":
    sys.exit(main())
