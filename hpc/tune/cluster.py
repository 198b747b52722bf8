"""Ray for one tune job: on this machine (``ray.init``) or across a Slurm allocation (the head on the first task's
node, a worker on every other node; one task per node, started by srun).

Seen with ray 2.60: Ray swaps 127.0.0.1 for the machine's non-loopback address unless
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, the dashboard's /api needs a token (kept in RUN_DIR, mode 0600), and unix
socket paths under a long temp dir overflow the 107-byte limit (a short link in /tmp points into RUN_DIR then).
Every process we start is ours to stop (and dies with the job process): nothing here runs ``ray stop``, which
would kill every Ray on the node, other jobs' too.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fluidperc.errors import UserError

LOOPBACK = "127.0.0.1"
SOCKET_LIMIT = 107
SESSION_SUFFIX = 64  # /session_<date>_<time>_<usec>_<pid>/sockets/plasma_store


def ray_env(token_file: Path, multi_node: bool = False) -> dict[str, str]:
    """Environment for every Ray process and driver of a run: no usage stats, token auth with the run's own token
    (created on first use), and on one node every listener on loopback. RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is
    what keeps Ray on 127.0.0.1, but it also makes ``ray start --address`` refuse to join, so a multi-node
    cluster runs without it (its nodes must reach each other anyway)."""
    token_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # a relaunch, or another node of this job: keep the token everyone already uses
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1" if multi_node else "0",
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}


def short_temp_dir(wanted: Path) -> Path:
    """``wanted`` itself when Ray's socket paths under it fit, else a short link in /tmp that points to it."""
    wanted = wanted.resolve()
    wanted.mkdir(parents=True, exist_ok=True)
    if len(str(wanted)) + SESSION_SUFFIX <= SOCKET_LIMIT:
        return wanted
    link = Path(tempfile.gettempdir()) / f"fpray-{hashlib.sha1(str(wanted).encode()).hexdigest()[:12]}"
    if link.is_symlink() and Path(os.readlink(link)) == wanted:
        return link
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(wanted, target_is_directory=True)
    return link


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def node_address(multi_node: bool) -> str:
    """Loopback when the whole cluster is this node; else the address other nodes reach this one at."""
    if not multi_node:
        return LOOPBACK
    return socket.gethostbyname(socket.gethostname())


@contextmanager
def local_ray(temp_dir: Path, token_file: Path, cpus: float, gpus: float, dashboard_host: str,
              dashboard_port: int) -> Iterator[str]:
    """A fresh Ray on this machine for the duration of the block; yields the dashboard URL."""
    os.environ.update(ray_env(token_file))
    import ray

    ctx = ray.init(address="local", num_cpus=int(cpus), num_gpus=int(gpus), include_dashboard=True,
                   dashboard_host=dashboard_host, dashboard_port=dashboard_port, _node_ip_address=LOOPBACK,
                   _temp_dir=str(short_temp_dir(temp_dir)), log_to_driver=False)
    try:
        yield f"http://{ctx.dashboard_url}"
    finally:
        ray.shutdown()


def _ray_executable() -> str:
    return str(Path(sys.executable).with_name("ray"))


def start_node(head: bool, ip: str, port: int, cpus: int, gpus: int, env: dict[str, str], temp_dir: Path | None,
               dashboard_host: str, dashboard_port: int, head_address: str | None = None) -> subprocess.Popen:
    """``ray start --block`` in its own session, so that stopping it (and only it) is one signal."""
    cmd = [_ray_executable(), "start", "--block", f"--node-ip-address={ip}", f"--num-cpus={cpus}",
           f"--num-gpus={gpus}", "--disable-usage-stats"]
    if head:
        cmd += ["--head", f"--port={port}", "--include-dashboard=true", f"--dashboard-host={dashboard_host}",
                f"--dashboard-port={dashboard_port}"]
        if temp_dir is not None:
            cmd.append(f"--temp-dir={short_temp_dir(temp_dir)}")
    else:
        cmd.append(f"--address={head_address}")
    return subprocess.Popen(cmd, env={**os.environ, **env}, preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    """SIGTERM the node when the job process dies, however it dies (scancel, time limit, SIGKILL): Slurm's
    linuxproc tracking loses children whose parent is gone, and a stray Ray would outlive the allocation."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_node(proc: subprocess.Popen, grace_s: float = 60.0) -> None:
    """SIGTERM lets ``ray start --block`` drain and stop its processes; SIGKILL its process tree if it does not."""
    if proc.poll() is not None:
        return
    tree = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in tree:  # only processes this node started
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of ``pid`` from /proc (Linux)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    out, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        out += kids
        frontier = kids
    return out


def wait_for_file(path: Path, timeout_s: float, what: str, alive: subprocess.Popen | None = None) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass  # half-written; the writer renames atomically, but be forgiving on odd filesystems
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"{what}: the Ray process exited with {alive.returncode} while waiting for {path}")
        time.sleep(0.5)
    raise TimeoutError(f"{what}: {path} did not appear within {timeout_s:.0f} s")


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def wait_for_nodes(address: str, nodes: int, timeout_s: float) -> None:
    """Connect the driver and wait until every node of the allocation has joined."""
    import ray

    deadline = time.monotonic() + timeout_s
    while not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)
    while sum(1 for n in ray.nodes() if n["Alive"]) < nodes:
        if time.monotonic() > deadline:
            alive = sum(1 for n in ray.nodes() if n["Alive"])
            raise UserError(f"only {alive} of {nodes} Ray nodes joined within {timeout_s:.0f} s; see the job's logs")
        time.sleep(1.0)
