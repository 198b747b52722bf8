"""Across nodes, on the three-node cluster of slurm/local-multinode-up.sh (network + UTS namespaces on a bridge
that routes nowhere): isolation, the check stage, DDP over two hosts, a datagen array spread over nodes, and a
Ray cluster with its head on one node and a worker on another."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import zarr

from conftest import MN_NODES, VGG_LAYERS, check_tidy, tune_sweep
from listeners import NamespaceSampler
from fluidperc.tasks.cell import CellConfig
from fluidperc.train import run

pytestmark = [pytest.mark.slurm, pytest.mark.multinode]

PORTS = (17817, 17818, 17819)  # slurmctld, slurmd, slurmdbd


def test_the_cluster_listens_only_inside_its_namespaces(multinode_cluster):
    """Nothing the cluster started is reachable from this machine's own network namespace."""
    listeners = subprocess.run(["ss", "-ltnuH"], capture_output=True, text=True, check=True).stdout
    ports = {int(line.split()[4].rsplit(":", 1)[1]) for line in listeners.splitlines() if line.split()[4:5]}
    assert not ports & {*PORTS, *range(60001, 60101)}, f"cluster ports listen in the host namespace: {listeners}"
    # the bridge carries no address, so this namespace has no path onto it (a connect() proves nothing here:
    # the machine's own egress answers any outbound TCP connect)
    bridge = subprocess.run(["ip", "-o", "addr", "show", "dev", "fpbr0"], capture_output=True, text=True, check=True)
    assert "inet" not in bridge.stdout, bridge.stdout
    route = subprocess.run(["ip", "route", "get", "10.213.0.10"], capture_output=True, text=True).stdout
    assert "fpbr0" not in route and "fpv" not in route, route
    # inside the controller's namespace it answers, and the nodes have no route anywhere but the bridge
    assert multinode_cluster.run("scontrol", "ping").returncode == 0
    routes = multinode_cluster.run("ip", "route").stdout
    assert "default" not in routes and "10.213.0.0/24" in routes


def test_check_stage_reports_each_nodes_host_and_address(multinode_cluster, tmp_path):
    sweep = tmp_path / "check.yaml"
    sweep.write_text("name: mncheck\nresources: {time_min: 5, cpus_per_task: 2}\ncheck: {tasks: 3, matmul_size: 64}\n")
    res = multinode_cluster.launch(str(sweep), "--out", str(tmp_path / "run"), "--wait")
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "run" / "check" / "summary.json").read_text())
    # 2 CPUs per task fill a node, so the three probes run on the three nodes
    assert summary["hosts"] == list(MN_NODES)
    assert summary["addresses"] == {"fpn1": "10.213.0.11", "fpn2": "10.213.0.12", "fpn3": "10.213.0.13"}
    assert "warning" not in summary


TRAIN_SWEEP = """
name: mn
train:
  data_dir: {data}
  tasks: [ae]
  datasets: [{{scene: karman, resolution: [32, 16]}}]
  losses: [mse]
  seeds: [0]
  settings: {{steps: {steps}, batch_size: 3, lr: 1.0e-3, checkpoint_every: 10, validate_every: 100}}
  resources: {{time_min: 15, nodes: 2, tasks_per_node: 1, cpus_per_task: 1}}
"""
LABEL = "ae-karman_32x16-mse-s0"


def _checkpoint_step(out: Path) -> int:
    if not (out / "checkpoint.pt.sha256").exists():
        return -1
    try:
        return int(torch.load(out / "checkpoint.pt", weights_only=True)["step"])
    except Exception:  # being replaced right now
        return -1


@pytest.mark.timeout(600)
def test_ddp_over_two_nodes_equals_one_process_and_resumes_after_cancel(multinode_cluster, data_dir, tmp_path):
    # the comparison with one process: rounding differences (the reduction order of a 6-sample batch against two
    # 3-sample halves) grow chaotically with steps. Two single-process runs that differ only in thread count
    # ended 4e-8 apart at 30 steps, 1e-6 at 100 and 1e-3 at 300 (300 steps once passed here by luck), so 50.
    steps = 50
    sweep, long_sweep = tmp_path / "mn.yaml", tmp_path / "mn_long.yaml"
    sweep.write_text(TRAIN_SWEEP.format(data=data_dir, steps=steps))
    # long enough to be cancelled mid-way: 300 steps once took under 5 s, less than noticing a checkpoint and
    # cancelling took
    long_sweep.write_text(TRAIN_SWEEP.format(data=data_dir, steps=1500))
    short, whole, cancelled = tmp_path / "short", tmp_path / "whole", tmp_path / "cancelled"
    for path, run_dir in ((sweep, short), (long_sweep, whole), (long_sweep, cancelled)):  # three 2-node jobs
        res = multinode_cluster.launch(str(path), "--out", str(run_dir))
        assert res.returncode == 0, res.stderr
    job = json.loads((cancelled / "manifest.json").read_text())["launches"][0]["groups"][0]["tasks"][0]["job_id"]
    deadline = time.time() + 300
    while _checkpoint_step(cancelled / "train" / LABEL) < 10:
        assert time.time() < deadline, "the 2-node job never checkpointed"
        time.sleep(0.3)
    assert multinode_cluster.run("scancel", job).returncode == 0
    while multinode_cluster.run("squeue", "-h", "-j", job).stdout.strip():
        time.sleep(0.5)
    assert not (cancelled / "train" / LABEL / "result.json").exists(), "the cancelled job must not have finished"
    with NamespaceSampler(MN_NODES) as listening:  # what the ranks listen on inside the nodes, while they train
        for path, run_dir in ((sweep, short), (long_sweep, whole), (long_sweep, cancelled)):
            # --wait: the short and whole runs' jobs are still queued or running from their launch
            res = multinode_cluster.launch(str(path), "--out", str(run_dir), "--wait", timeout=500)
            assert res.returncode == 0, res.stderr
    results = {p.name: json.loads((p / "train" / LABEL / "result.json").read_text()) for p in (short, whole, cancelled)}
    addresses = {"fpn1": "10.213.0.11", "fpn2": "10.213.0.12", "fpn3": "10.213.0.13"}
    for r in results.values():
        assert r["world_size"] == 2 and len(set(r["rank_digests"])) == 1
        # rank, world size and MASTER_ADDR came from Slurm (submitit's environment), one rank per node
        assert len(set(r["rank_hosts"])) == 2 and set(r["rank_hosts"]) <= set(MN_NODES)
        assert r["master_addr"] == r["rank_hosts"][0]
        # the store listened on the first node's cluster address, not on every interface
        assert r["rendezvous"].startswith(f"tcp {addresses[r['rank_hosts'][0]]}:"), r["rendezvous"]
    stores = {f"{host} {addresses[host]}:{r['rendezvous'].rsplit(':', 1)[1]}" for r in results.values()
              for host in r["rank_hosts"][:1]}
    seen = {f"{ns} {a}:{p}" for ns, items in listening.seen.items() for a, p, _ in items}
    assert stores & seen, f"no rank-0 store was seen listening ({stores}) among {sorted(seen)}"
    # the ranks themselves (the store, gloo) listen on no wildcard address; the nodes' slurmd and srun do, inside
    # namespaces that route nowhere (exempt, as the listener guard's rule says)
    ranks = listening.wildcard(process='"python')
    assert not ranks, f"a rank listened on every interface inside a node: {ranks}"
    logs = "".join(p.read_text() for p in (cancelled / "logs").rglob("*_log.err"))
    assert f"cell {LABEL}: resuming from step" in logs, logs[-2000:]
    assert results["cancelled"]["resumed_from_step"] >= 10 and results["whole"]["resumed_from_step"] is None
    assert results["cancelled"]["steps"] == results["whole"]["steps"] == 1500 and results["short"]["steps"] == steps
    assert results["cancelled"]["weights_sha256"] == results["whole"]["weights_sha256"]

    # one process with the global batch (2 x 3) takes the same samples per step, so it ends at the same weights
    def one_process(batch_size: int, out: Path) -> dict:
        cell = CellConfig(task="ae", loss="mse", scene="karman", data_dir=str(data_dir), resolution=(32, 16), seed=0,
                          settings={"steps": steps, "batch_size": batch_size, "lr": 1e-3, "checkpoint_every": 10,
                                    "validate_every": 100})
        run(cell, out, progress=False)
        return torch.load(out / "model.pt", weights_only=True)["model"]

    one = one_process(6, tmp_path / "single")
    ddp = torch.load(short / "train" / LABEL / "model.pt", weights_only=True)["model"]
    for name, value in one.items():
        torch.testing.assert_close(ddp[name], value, rtol=1e-4, atol=1e-5,
                                   msg=lambda m, name=name: f"parameter {name}: {m}")
    # the comparison has teeth: one rank's half batch alone (no gradient averaging) ends far outside that tolerance
    alone = one_process(3, tmp_path / "half")
    gap = max(float((alone[name] - ddp[name]).abs().max()) for name in ddp)
    assert gap > 100 * 1e-5, f"one rank alone ends only {gap:.2e} from DDP; the comparison above proves nothing"


DATAGEN_SWEEP = """
name: mndg
datagen:
  data_dir: {data}
  resources: {{cpus_per_task: 1, time_min: 20}}
  datasets:
    - scene: karman
      resolution: [32, 16]
      factor: 2
      train_reynolds: [1.0e5, 2.0e5, 3.0e5, 4.0e5, 5.0e5]
      test_reynolds: [2.5e5]
      steps: 300
      keep_from: 0
      sims_per_task: 1
      frames_per_chunk: 10
"""


@pytest.mark.timeout(500)
def test_datagen_array_over_three_nodes_writes_one_store_and_a_relaunch_redoes_only_a_killed_task(multinode_cluster, tmp_path):
    sweep = tmp_path / "dg.yaml"
    sweep.write_text(DATAGEN_SWEEP.format(data=tmp_path / "data"))
    run_dir = tmp_path / "run"
    res = multinode_cluster.launch(str(sweep), "--out", str(run_dir))
    assert res.returncode == 0, res.stderr
    groups = json.loads((run_dir / "manifest.json").read_text())["launches"][0]["groups"]
    tasks = groups[0]["tasks"]
    # The statistics job waits on the array (afterok, kill_on_invalid_dep). A relaunch that comes while it is still
    # queued must withdraw it and submit it again behind the new array, or its --wait returns with no statistics
    # written. Held alone, it was once no longer pending when a relaunch under load came (Slurm cancels a job whose
    # afterok failed, kill_on_invalid_dep), and a CI run failed. So it is held and its dependency dropped: it stays
    # queued, as when the relaunch comes first.
    stats_job = groups[1]["tasks"][0]["job_id"]
    assert multinode_cluster.run("scontrol", "hold", stats_job).returncode == 0
    assert multinode_cluster.run("scontrol", "update", f"JobId={stats_job}", "Dependency=").returncode == 0
    high = tmp_path / "data" / "karman_32x16.zarr"
    victim = tasks[5]["job_id"]
    deadline = time.time() + 240
    while np.isfinite(zarr.open_group(str(high), mode="r", use_consolidated=False)["marker"][5, :, 0, 0]).sum() < 10:
        assert time.time() < deadline, "sim 5 never started writing"
        time.sleep(0.3)
    assert multinode_cluster.run("scancel", "--signal=KILL", "--full", victim).returncode == 0
    array = victim.split("_")[0]
    while multinode_cluster.run("squeue", "-h", "-j", array).stdout.strip():
        time.sleep(0.5)
    nodes = multinode_cluster.job_nodes([array])
    assert len({nodes[t["job_id"]] for t in tasks}) >= 2, f"the array stayed on one node: {nodes}"
    stored = zarr.open_group(str(high), mode="r", use_consolidated=False)
    assert stored["complete"][:].tolist() == [True] * 5 + [False]
    before = {sim: stored["velocity_x"][sim] for sim in range(5)}

    again = multinode_cluster.launch(str(sweep), "--out", str(run_dir), "--wait")
    assert again.returncode == 0, again.stderr
    relaunch = json.loads((run_dir / "manifest.json").read_text())["launches"][1]["groups"]
    assert [t["label"] for t in relaunch[0]["tasks"]] == ["sims-5-5"] and relaunch[0]["already_done"] == 5
    assert f"withdrew 1 queued job(s) of an earlier launch whose dependencies failed ({stats_job})" in again.stdout
    group = zarr.open_group(str(high), mode="r")
    assert group["complete"][:].all() and np.isfinite(group["velocity_x"][:]).all()
    assert set(group.attrs["statistics"]) == {"velocity_x", "velocity_y", "marker"}
    for sim in range(5):  # the complete sims were not written again
        np.testing.assert_array_equal(group["velocity_x"][sim], before[sim])
    status = multinode_cluster.run(sys.executable, "-m", "hpc.status", str(run_dir))
    assert "karman_32x16: 6/6 sims" in status.stdout, status.stdout + status.stderr


@pytest.mark.timeout(600)
def test_ray_tune_over_two_nodes_places_trials_on_both_ends_with_the_job_and_resumes(multinode_cluster, tune_env,
                                                                                       tmp_path):
    # 2 CPUs per trial fill a node: the two trials run side by side only if the worker node took one
    # 6 epochs of 30 steps: the job is cancelled mid-experiment, after each trial's first checkpoint
    sweep = tune_sweep(tmp_path / "t.yaml", tune_env["DATA_DIR"], VGG_LAYERS[:2], 6, 8265, epoch_steps=30,
                       asha={"grace_period": 6, "reduction_factor": 2}, trial_resources={"cpus": 2},
                       resources={"nodes": 2, "tasks_per_node": 1, "cpus_per_task": 2, "time_min": 20})
    run_dir = tmp_path / "run"
    first = multinode_cluster.launch(str(sweep), "--out", str(run_dir), env=tune_env)
    assert first.returncode == 0, first.stderr
    job = re.search(r"submitted tune: job (\d+)", first.stdout).group(1)
    experiment = run_dir / "tune" / "experiment"
    deadline = time.monotonic() + 300
    while len({p.parent for p in experiment.glob("trial-*/checkpoint_*")}) < 2:  # Tune keeps only the latest
        assert time.monotonic() < deadline, "the two trials did not both checkpoint in time"
        time.sleep(0.5)
    head = (run_dir / "tune" / "dashboard.txt").read_text().split(" on ", 1)[1].split(".")[0]
    running = multinode_cluster.node_processes()
    ray_nodes = sorted(n for n, cmds in running.items() if any("ray" in c for c in cmds))
    assert len(ray_nodes) == 2 and head in ray_nodes, running
    # the dashboard (and every other Ray listener meant for the user) stays on the head's loopback
    listening = multinode_cluster.run("ss", "-ltnH", netns=Path(f"/run/netns/{head}")).stdout
    dashboard = [line.split()[3] for line in listening.splitlines() if line.split()[3].endswith(":8265")]
    assert dashboard == ["127.0.0.1:8265"], listening

    assert not (run_dir / "tune.zarr").exists(), "the experiment ended before it could be cancelled"
    assert multinode_cluster.run("scancel", job).returncode == 0
    multinode_cluster.wait_quiet(90)  # the job's ranks and Ray's processes end with it
    assert not (run_dir / "tune.zarr").exists()

    second = multinode_cluster.launch(str(sweep), "--out", str(run_dir), "--wait", env=tune_env, timeout=500)
    assert second.returncode == 0, second.stdout + second.stderr
    logs = "".join(p.read_text() for p in (run_dir / "logs" / "tune").glob("*_log.out"))
    assert "restoring the Tune experiment" in logs
    ds = xr.open_zarr(run_dir / "tune.zarr").load()
    check_tidy(ds, 2, 6)
    assert sorted(ds.node.values) == ray_nodes, "each trial ran on its own node"
    # --wait returns once the job's result is written; its batch step and Ray then take a moment to end
    multinode_cluster.wait_quiet(60)
    status = multinode_cluster.run(sys.executable, "-m", "hpc.status", str(run_dir), env=tune_env)
    assert "2 trials finished (0 errored)" in status.stdout, status.stdout + status.stderr
