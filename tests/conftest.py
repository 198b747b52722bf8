"""Shared fixtures: the real local Slurm cluster (skipped with the reason when absent), CLI runners, ../shared,
and the listener guard (tests/listeners.py) around every test."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from listeners import ListenerGuard, failure

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
LSIM_WEIGHTS = SHARED / "weights" / "LSiM.pth"


_GUARD = ListenerGuard()


@pytest.fixture(scope="session", autouse=True)
def listener_guard() -> ListenerGuard:
    """Session-wide: samples this namespace's listeners around and during every test (tests/listeners.py); a test
    during which one appeared off loopback fails, naming the process, address and port."""
    if not _GUARD.available:
        pytest.fail("the listener guard needs `ss` (Debian's iproute2) to see what the tests listen on")
    _GUARD.start()
    yield _GUARD
    _GUARD.stop()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    _GUARD.begin()  # before the test's fixtures: what they start counts as the test's
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when != "teardown":
        return
    found = _GUARD.end()
    report = outcome.get_result()
    if found and report.passed:
        report.outcome = "failed"
        report.longrepr = failure(found)


@pytest.fixture(scope="session")
def slurm_session() -> str:
    """The local cluster that `make test` brings up; skips with the reason when it does not answer."""
    from hpc.backends import slurm_reachable

    ok, why = slurm_reachable()
    if not ok:
        pytest.skip(f"no Slurm cluster ({why}); `make test` brings one up as root on Debian/Ubuntu")
    return os.environ.get("SLURM_CONF", "")


def wait_until_quiet(busy, what: str, timeout: float = 180) -> None:
    """Poll ``busy()`` (a description of what still runs, "" when nothing does) until it is "", or fail naming it."""
    import time

    deadline = time.monotonic() + timeout
    while found := busy():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not go quiet in {timeout:.0f} s: {found}")
        time.sleep(0.5)


def nodes_out_of_service() -> list[tuple[str, str, str]]:
    """(node, state, Slurm's reason) for each test-cluster node that takes no jobs (drained, draining, down). A
    drained node never comes back by itself, so a test waiting on it would wait for its timeout."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N|%T|%E"], capture_output=True, text=True, timeout=30).stdout
    rows = [tuple(line.split("|", 2)) for line in out.splitlines()]
    return [row for row in rows if any(word in row[1] for word in ("drain", "down", "fail"))]


def slurm_node_problems() -> str:
    """The nodes out of service, as a sentence; "" when every node takes jobs."""
    return "; ".join(f"node {name} is {state} ({reason})" for name, state, reason in nodes_out_of_service())


def resume_slurm_nodes() -> None:
    """Return the drained or down nodes to service, as an administrator would once the cause is known."""
    for name, _, _ in nodes_out_of_service():
        subprocess.run(["scontrol", "update", f"nodename={name}", "state=resume"], capture_output=True, timeout=30)


@contextlib.contextmanager
def node_drained(reason: str):
    """The single-node cluster's node drained with ``reason`` while the block runs, so that jobs stay queued
    (PENDING, ReqNodeNotAvail) as they do on a busy cluster; the node takes jobs again afterwards, whatever
    happened. Yields the node's name."""
    node = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, timeout=60).stdout.split()[0]
    subprocess.run(["scontrol", "update", f"nodename={node}", "state=drain", f"reason={reason}"], check=True,
                   capture_output=True, timeout=60)
    try:
        yield node
    finally:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], check=True, capture_output=True,
                       timeout=60)


@pytest.fixture
def slurm_cluster(slurm_session: str):
    """The single-node cluster with an empty queue and its node taking jobs: an earlier test's jobs (a requeued or
    cancelled one that is still completing) never count against this test's limits or hold its node. A test whose
    jobs leave the node drained (a step that outlived its signals: "Kill task failed") fails for it, and the node is
    resumed, so the tests after it fail only for their own reasons."""
    if problems := slurm_node_problems():
        warnings.warn(f"the Slurm test cluster had a node out of service before this test; resumed it: {problems}")
        resume_slurm_nodes()

    def queued() -> str:
        jobs = subprocess.run(["squeue", "-h", "-o", "%i %T %r"], capture_output=True, text=True, timeout=30).stdout
        return f"queued {[line for line in jobs.splitlines() if line.strip()]}" if jobs.split() else ""

    wait_until_quiet(queued, "the Slurm test cluster's queue")
    yield slurm_session
    if problems := slurm_node_problems():
        resume_slurm_nodes()
        probe = Path(slurm_session or "/tmp/fluidperc-slurm/etc/slurm.conf").parents[1] / "log" / "unkillable.log"
        seen = f"; what the processes were doing then ({probe}):\n{probe.read_text()[-6000:]}" if probe.exists() else ""
        pytest.fail(f"this test's jobs left the Slurm test cluster's node out of service, resumed now: {problems}{seen}")


MN_STATE = Path(os.environ.get("FLUIDPERC_MN_DIR", "/tmp/fluidperc-mn"))
MN_NETNS = Path("/run/netns/fpctl")
MN_NODES = ("fpn1", "fpn2", "fpn3")


class Multinode:
    """The three-node cluster of slurm/local-multinode-up.sh. Its daemons listen only inside network namespaces,
    so every client command runs in the controller's namespace, as a user would run it on a login node."""

    conf = MN_STATE / "etc" / "slurm.conf"

    def run(self, *args: str, timeout: float = 300, check: bool = False, env: dict[str, str] | None = None,
            netns: Path = MN_NETNS) -> subprocess.CompletedProcess:
        extra = [f"{k}={v}" for k, v in (env or {}).items()]
        cmd = ["nsenter", f"--net={netns}", "env", f"SLURM_CONF={self.conf}", "PYTHONUNBUFFERED=1", *extra, *args]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout, check=check)

    def launch(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "hpc.launch", *args, "--backend", "slurm", timeout=timeout, env=env)

    def node_processes(self) -> dict[str, list[str]]:
        """node -> the command lines of every process in its network namespace except its slurmd."""
        found = {}
        for node in MN_NODES:
            pids = subprocess.run(["ip", "netns", "pids", node], capture_output=True, text=True).stdout.split()
            cmds = []
            for pid in pids:
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                except OSError:
                    continue  # ended meanwhile
                if cmd and not cmd.startswith("slurmd ") and "unshare --uts" not in cmd:
                    cmds.append(f"{pid} {cmd}")
            found[node] = cmds
        return found

    def wait_quiet(self, timeout: float = 180) -> None:
        """Until no job is queued and no process but slurmd runs on a node: what an earlier test left behind
        (a cancelled job's ranks, Ray's workers) ends, and no test sees another's load, listeners or queue."""
        def busy() -> str:
            queued = [line for line in self.run("squeue", "-h", "-o", "%i %T", timeout=30).stdout.split("\n")
                      if line.strip()]
            running = {node: cmds for node, cmds in self.node_processes().items() if cmds}
            return f"queued {queued}, still running {running}" if queued or running else ""

        wait_until_quiet(busy, "the multi-node cluster", timeout)

    def job_nodes(self, job_ids: list[str]) -> dict[str, str]:
        """job id -> the node it ran on, from accounting."""
        out = self.run("sacct", "-X", "-n", "-P", "-o", "JobID,NodeList", "-j", ",".join(job_ids), check=True).stdout
        return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


@pytest.fixture
def multinode_cluster(multinode_session: Multinode) -> Multinode:
    """The multi-node cluster, quiet: nothing queued or running from an earlier test."""
    multinode_session.wait_quiet()
    return multinode_session


@pytest.fixture(scope="session")
def multinode_session() -> Multinode:
    """Skips with the reason when the multi-node cluster is not up (`make test` brings it up as root)."""
    if not MN_NETNS.exists() or not Multinode.conf.is_file():
        pytest.skip(f"no multi-node test cluster ({MN_NETNS} or {Multinode.conf} is missing); `make test` brings "
                    "one up as root with slurm/local-multinode-up.sh")
    cluster = Multinode()
    nodes = cluster.run("sinfo", "-h", "-N", "-o", "%N %t", timeout=30).stdout.split("\n")
    ready = [line.split()[0] for line in nodes if line.split()[1:2] and line.split()[1].startswith(("idle", "mix", "alloc"))]
    if sorted(ready) != list(MN_NODES):
        pytest.skip(f"the multi-node test cluster answers with nodes {nodes}, not {MN_NODES} ready")
    return cluster


def run_module(module: str, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m module args` as a user would, capturing output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


TINY_KARMAN = {
    "scene": "karman", "resolution": [64, 32], "factor": 2, "train_reynolds": [1.0e5, 3.0e5, 6.0e5],
    "test_reynolds": [2.0e5], "steps": 60, "keep_from": 30, "sims_per_task": 4, "frames_per_chunk": 10,
}


def shared_dir(tmp_path_factory) -> Path:
    """Where session data lives that every worker of one run shares (pytest-xdist's workers each have a
    session of their own; their base directories are siblings)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A tiny Karman dataset pair (64x32 -> 32x16), generated in-process with the real generator, once per run:
    the first worker to get here makes it, under a lock, and the others read it. Tests only read it."""
    import fcntl

    from fluidperc.datasets import generate
    from fluidperc.datasets.spec import DatasetSpec

    shared = shared_dir(tmp_path_factory)
    root = shared / "tiny-karman"
    with open(shared / "tiny-karman.lock", "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        if not (root / ".complete").exists():
            root.mkdir(exist_ok=True)
            generate.generate_all(DatasetSpec.model_validate(TINY_KARMAN), root)
            (root / ".complete").touch()
    return root


# Tests that share something only one of them may use at a time run one after another, in one pytest process of
# their group: the single-node cluster (its queue and its limits are asserted), and the multi-node cluster together
# with every Ray (Ray's workers are told apart from other runs' by name only). `make test` runs the groups as
# separate pytest processes side by side (tests/run_groups.py), not as pytest-xdist's loadgroup: with pytest 9.2
# and pytest-xdist 3.8 loadgroup silently ignores the groups (pytest-dev/pytest-xdist#1386; docs/development.md).
GROUPS = ("slurm", "multinode-and-ray", "other")  # tests/run_groups.py runs one pytest process per group


def group_of(item) -> str:
    if "slurm_cluster" in item.fixturenames:
        return "slurm"
    if "multinode_cluster" in item.fixturenames or item.get_closest_marker("ray") is not None:
        return "multinode-and-ray"
    return "other"


def pytest_addoption(parser):
    parser.addoption("--test-group", choices=GROUPS, default=None,
                     help="run only this group's tests (tests that share a cluster or Ray are one group; "
                          "tests/run_groups.py runs the groups side by side)")


def pytest_collection_modifyitems(config, items):
    group = config.getoption("--test-group")
    if group is None:
        return
    keep, dropped = [], []
    for item in items:
        (keep if group_of(item) == group else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture
def launch_cli():
    return lambda *args, **kw: run_module("hpc.launch", *args, **kw)


@pytest.fixture
def status_cli():
    return lambda *args, **kw: run_module("hpc.status", *args, **kw)


@pytest.fixture
def lsim_weights() -> Path:
    if not LSIM_WEIGHTS.is_file():
        pytest.skip(f"the LSiM weights are not at {LSIM_WEIGHTS} (../shared/weights/LSiM.pth beside the checkout)")
    return LSIM_WEIGHTS


# --- the tune stage's fixtures (test_tune.py, test_multinode.py) ----------------------------------------------
VGG_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


@pytest.fixture(scope="session")
def tune_env(data_dir, tmp_path_factory) -> dict[str, str]:
    """The session's tiny Karman pair, and a random-valued VGG-16 trunk with a digest the store is told to trust
    (ImageNet weights cannot be downloaded here); returned as the environment the CLI runs with."""
    import torch
    from torchvision.models.vgg import cfgs, make_layers

    from fluidperc.weights import CATALOG

    root = tmp_path_factory.mktemp("tune")
    torch.manual_seed(0)
    weights = root / "weights"
    weights.mkdir()
    path = weights / CATALOG["vgg16"].filename
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}, path)
    digests = root / "digests.json"
    digests.write_text(json.dumps({"vgg16": hashlib.sha256(path.read_bytes()).hexdigest()}))
    return {"FLUIDPERC_WEIGHTS": str(weights), "FLUIDPERC_WEIGHTS_DIGESTS": str(digests), "DATA_DIR": str(data_dir)}


def tune_sweep(path: Path, data_dir: str, layers, epochs: int, dashboard_port: int, epoch_steps: int = 2,
               **tune) -> Path:
    sweep = {
        "name": "tune_test",
        "resources": {"cpus_per_task": 2, "time_min": 20},
        "tune": {
            "data_dir": data_dir, "task": "ae", "dataset": {"scene": "karman", "resolution": [32, 16]},
            "settings": {"batch_size": 4, "lr": 1.0e-3, "val_samples": 8},
            "space": {"loss": {"grid": [{"name": "vgg", "layer": layer, "pad_to": [32, 32]} for layer in layers]},
                      "lr": {"loguniform": [3.0e-4, 3.0e-3]}},
            "num_samples": 1, "epochs": epochs, "epoch_steps": epoch_steps, "asha": {"grace_period": 1, "reduction_factor": 2},
            "trial_resources": {"cpus": 1}, "dashboard_port": dashboard_port, **tune,
        },
    }
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def check_tidy(ds: xr.Dataset, trials: int, epochs: int) -> None:
    assert ds.sizes["trial"] == trials and list(ds.epoch.values) == list(range(1, epochs + 1))
    assert set(ds.status.values) <= {"completed", "stopped early"}, dict(zip(ds.trial.values, ds.status.values))
    assert int(ds.epochs_run.max()) == epochs, "the best trial must run to the end"
    # A resumed trial continues from its checkpoint: the step of each report is epoch x epoch_steps.
    steps = ds.step.values
    expected = np.broadcast_to(ds.epoch.values * int(ds.attrs["epoch_steps"]), steps.shape)
    reported = np.isfinite(steps)
    assert (steps[reported] == expected[reported]).all(), steps
    assert bool((ds.val_rel_l2.notnull().sum("epoch") == ds.epochs_run).all())
