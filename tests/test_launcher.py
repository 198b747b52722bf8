"""The launcher end to end: plan, submit (Slurm arrays + afterok, local, debug), manifest, status, relaunch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, node_drained

SWEEP = """
name: t-check
resources: {time_min: 5}
check: {tasks: 4, matmul_size: 32%s}
"""


def write_sweep(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "check.yaml"
    path.write_text(SWEEP % extra)
    return path


def groups_by_name(run_dir: Path, launch: int = -1) -> dict:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {g["name"]: g for g in manifest["launches"][launch]["groups"]}


@pytest.mark.slurm
def test_slurm_array_and_dependent_job_complete_in_manifest_and_status(slurm_cluster, tmp_path, launch_cli, status_cli):
    run_dir = tmp_path / "run"
    res = launch_cli(str(write_sweep(tmp_path)), "--backend", "slurm", "--out", str(run_dir), "--wait")
    assert res.returncode == 0, res.stderr
    groups = groups_by_name(run_dir)
    probe_ids = {t["job_id"].split("_")[0] for t in groups["check.probe"]["tasks"]}
    assert len(probe_ids) == 1 and len(groups["check.probe"]["tasks"]) == 4, "4 probes must be ONE array"
    assert groups["check.summary"]["note"] == f"afterok:{probe_ids.pop()}"
    assert json.loads((run_dir / "check" / "summary.json").read_text())["probes"] == 4
    for _ in range(40):  # slurmdbd's accounting may trail the jobs' own completion by a moment under load
        status = status_cli(str(run_dir))
        assert status.returncode == 0, status.stderr
        if "check.probe    COMPLETED 4" in status.stdout and "check.summary  COMPLETED 1" in status.stdout:
            break
        time.sleep(0.5)
    assert "check.probe    COMPLETED 4" in status.stdout and "check.summary  COMPLETED 1" in status.stdout, status.stdout
    assert "4/4 probes" in status.stdout

    again = launch_cli(str(write_sweep(tmp_path)), "--backend", "slurm", "--out", str(run_dir))
    assert again.returncode == 0 and "nothing to submit" in again.stdout
    assert len(json.loads((run_dir / "manifest.json").read_text())["launches"]) == 1


@pytest.mark.slurm
def test_slurm_failed_task_is_named_and_its_dependent_never_runs(slurm_cluster, tmp_path, launch_cli):
    run_dir = tmp_path / "run"
    res = launch_cli(str(write_sweep(tmp_path, ", fail_tasks: [2]")), "--backend", "slurm", "--out", str(run_dir), "--wait")
    assert res.returncode == 1
    assert "check.probe task probe-2" in res.stderr and "probe 2 failed on purpose" in res.stderr
    assert "check.summary: not run, because check.probe failed" in res.stderr
    assert not (run_dir / "check" / "summary.json").exists()
    assert sorted(p.name for p in (run_dir / "check").glob("probe-*.json")) == [
        "probe-0.json", "probe-1.json", "probe-3.json"
    ]


def _scontrol(*args: str) -> None:
    subprocess.run(["scontrol", *args], check=True, capture_output=True, timeout=60)


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_slurm_wait_and_status_name_a_drained_node_and_a_held_job_instead_of_waiting_forever_and_a_relaunch_finishes(
        slurm_cluster, tmp_path, launch_cli, status_cli):
    sweep, run_dir, err_path = write_sweep(tmp_path), tmp_path / "run", tmp_path / "launch.err"
    with node_drained("taken out by a test") as node:
        with err_path.open("w") as err:
            launched = subprocess.Popen([sys.executable, "-m", "hpc.launch", str(sweep), "--backend", "slurm", "--out",
                                         str(run_dir), "--wait"], cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        deadline = time.time() + 120
        while "note: job" not in err_path.read_text():  # the launcher sees why its jobs wait
            assert time.time() < deadline and launched.poll() is None, err_path.read_text()
            time.sleep(0.2)
        assert f"Nodes out of service: {node} (drained: taken out by a test)" in err_path.read_text(), err_path.read_text()
        probes = groups_by_name(run_dir)["check.probe"]["tasks"][0]["job_id"].split("_")[0]
        _scontrol("hold", probes)
        out, _ = launched.communicate(timeout=120)
    err = err_path.read_text()
    assert launched.returncode == 1, out + err
    assert f"check.probe task probe-0 (job {probes}_0) is held by Slurm (JobHeld" in err, err
    assert f"scontrol release {probes}_0" in err and "relaunch with --wait" in err, err
    assert "check.summary: still queued, after check.probe, whose jobs will not start by themselves" in err, err
    status = status_cli(str(run_dir)).stdout  # hpc.status says the same, with squeue's reasons
    assert f"check.probe: 4 jobs pending, JobHeldAdmin; held: `scontrol release {probes}_0 {probes}_1 " in status, status
    assert "check.summary: 1 job pending, Dependency" in status, status

    _scontrol("release", probes)
    again = launch_cli(str(sweep), "--backend", "slurm", "--out", str(run_dir), "--wait")
    assert again.returncode == 0, again.stderr
    assert json.loads((run_dir / "check" / "summary.json").read_text())["probes"] == 4


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_slurm_wait_reports_a_job_over_its_partitions_time_limit_instead_of_waiting_forever(
        slurm_cluster, tmp_path, launch_cli, status_cli):
    """EnforcePartLimits=NO (Slurm's default) queues a job whose time limit is above the partition's MaxTime, and
    it pends for good (PartitionTimeLimit)."""
    run_dir = tmp_path / "run"
    partition = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=60).stdout.split()[0]
    _scontrol("update", f"partitionname={partition.rstrip('*')}", "maxtime=2")
    try:
        res = launch_cli(str(write_sweep(tmp_path)), "--backend", "slurm", "--out", str(run_dir), "--wait")
        status = status_cli(str(run_dir)).stdout
    finally:
        _scontrol("update", f"partitionname={partition.rstrip('*')}", "maxtime=infinite")
        probes = groups_by_name(run_dir)["check.probe"]["tasks"][0]["job_id"].split("_")[0]
        subprocess.run(["scancel", probes], timeout=60)  # the summary goes with it (kill_on_invalid_dep)
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"check.probe task probe-0 (job {probes}_0) cannot start as submitted (PartitionTimeLimit)" in res.stderr
    assert f"`scancel {probes}_0`" in res.stderr and "lower the sweep's resources" in res.stderr, res.stderr
    assert "check.probe: 4 jobs pending, PartitionTimeLimit; cannot start as submitted" in status, status


@pytest.mark.parametrize("backend", ["local", "debug"])
@pytest.mark.slow
def test_same_sweep_runs_on_the_local_and_debug_backends(tmp_path, launch_cli, status_cli, backend):
    run_dir = tmp_path / "run"
    res = launch_cli(str(write_sweep(tmp_path)), "--backend", backend, "--out", str(run_dir))
    assert res.returncode == 0, res.stderr
    assert json.loads((run_dir / "check" / "summary.json").read_text())["probes"] == 4
    states = [t["state"] for g in groups_by_name(run_dir).values() for t in g["tasks"]]
    assert states == ["COMPLETED"] * 5
    assert "check.probe    COMPLETED 4" in status_cli(str(run_dir)).stdout


@pytest.mark.slow
def test_relaunch_after_a_failure_runs_only_the_missing_tasks(tmp_path, launch_cli):
    run_dir = tmp_path / "run"
    first = launch_cli(str(write_sweep(tmp_path, ", fail_tasks: [1]")), "--backend", "local", "--out", str(run_dir))
    assert first.returncode == 1 and "probe 1 failed on purpose" in first.stderr
    assert groups_by_name(run_dir)["check.summary"]["note"] == "not run: check.probe failed"
    second = launch_cli(str(write_sweep(tmp_path)), "--backend", "local", "--out", str(run_dir))
    assert second.returncode == 0, second.stderr
    groups = groups_by_name(run_dir)
    assert [t["label"] for t in groups["check.probe"]["tasks"]] == ["probe-1"]
    assert groups["check.probe"]["already_done"] == 3
    assert [t["label"] for t in groups["check.summary"]["tasks"]] == ["summary"]


def test_dry_run_prints_the_plan_and_creates_nothing(tmp_path, launch_cli):
    run_dir = tmp_path / "run"
    res = launch_cli(str(write_sweep(tmp_path)), "--dry-run", "--out", str(run_dir))
    assert res.returncode == 0, res.stderr
    assert "check.probe" in res.stdout and "array" in res.stdout and "4/4" in res.stdout
    assert "5 task(s) in 2 submission(s)" in res.stdout
    assert not run_dir.exists()


def test_dry_run_refuses_an_unknown_backend_and_takes_overrides_after_the_options(tmp_path, launch_cli):
    sweep = str(write_sweep(tmp_path))
    wrong = launch_cli(sweep, "--dry-run", "--backend", "nosuch", "--out", str(tmp_path / "run"))
    assert wrong.returncode == 2 and "unknown backend 'nosuch'; expected one of auto, slurm, local, debug" in wrong.stderr
    res = launch_cli(sweep, "--dry-run", "--out", str(tmp_path / "run"), "check.tasks=3")
    assert res.returncode == 0 and "check.tasks=3" in res.stdout and "3/3" in res.stdout, res.stdout + res.stderr


def test_cluster_limits_split_a_group_into_arrays_of_at_most_max_array_size_and_read_scontrols_format():
    from hpc.backends import Limits, _read_config_int

    assert Limits(max_array_tasks=8).array_sizes(20) == [8, 8, 4]
    assert Limits(max_array_tasks=8).array_sizes(16) == [8, 8]
    assert Limits(max_array_tasks=8).array_sizes(0) == []
    assert Limits().array_sizes(2000) == [2000]
    config = "MaxArraySize            = 1001\nMaxJobCount             = 10000\nMaxStepCount = (null)\n"
    assert _read_config_int(config, "MaxArraySize") == 1001 and _read_config_int(config, "MaxJobCount") == 10000
    assert _read_config_int(config, "MaxStepCount") is None and _read_config_int(config, "Nothing") is None
    assert Limits(8, 10000, 5).describe() == "MaxArraySize=8, MaxJobCount=10000, MaxSubmitJobs=5"


@pytest.mark.slow
def test_a_slurm_dry_run_on_a_machine_without_the_cluster_still_shows_the_plan_and_says_the_limits_were_not_read(
        tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "SLURM_CONF": str(tmp_path / "no-such-slurm.conf")}
    res = subprocess.run([sys.executable, "-m", "hpc.launch", "sweeps/check.yaml", "--backend", "slurm", "--dry-run",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "dry run: nothing is submitted" in res.stdout and "cluster limits: not read (" in res.stdout, res.stdout
    assert not (tmp_path / "run").exists()
