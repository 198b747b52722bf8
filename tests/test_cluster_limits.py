"""The limits every real cluster has, on the single-node test cluster: an array size limit (MaxArraySize=8 there,
slurm/local-cluster-up.sh) and a time limit that a training job crosses by checkpoint and requeue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
import zarr

from conftest import ROOT, run_module, slurm_node_problems

pytestmark = pytest.mark.slurm

DATAGEN_20 = """
name: arr
datagen:
  data_dir: {data}
  resources: {{cpus_per_task: 1, time_min: 20}}
  datasets:
    - scene: karman
      resolution: [32, 16]
      factor: 2
      train_reynolds: [1.0e5, 1.5e5, 2.0e5, 2.5e5, 3.0e5, 3.5e5, 4.0e5, 4.5e5, 5.0e5, 5.5e5,
                       6.0e5, 6.5e5, 7.0e5, 7.5e5, 8.0e5, 8.5e5]
      test_reynolds: [1.25e5, 3.25e5, 5.25e5, 7.25e5]
      steps: 40
      keep_from: 0
      sims_per_task: 1
      frames_per_chunk: 10
"""


def _slurm(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=True).stdout


def _config_value(key: str) -> str:
    for line in _slurm("scontrol", "show", "config").splitlines():
        name, _, value = line.partition("=")
        if name.strip() == key:
            return value.strip()
    return ""


@pytest.mark.timeout(600)
def test_a_20_task_datagen_group_goes_in_as_three_arrays_completes_as_one_group_and_a_relaunch_redoes_a_killed_task(
        slurm_cluster, tmp_path, launch_cli, status_cli):
    if _config_value("MaxArraySize") != "8":
        pytest.skip("the test cluster runs with MaxArraySize=8 (slurm/local-cluster-up.sh); this one does not")
    sweep = tmp_path / "arr.yaml"
    sweep.write_text(DATAGEN_20.format(data=tmp_path / "data"))
    run_dir = tmp_path / "run"
    dry = launch_cli(str(sweep), "--backend", "slurm", "--out", str(run_dir), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "MaxArraySize=8" in dry.stdout and "20 tasks go in as 3 arrays of 8, 8, 4 tasks" in dry.stdout, dry.stdout

    res = launch_cli(str(sweep), "--backend", "slurm", "--out", str(run_dir))
    assert res.returncode == 0, res.stderr
    assert "20 tasks as 3 arrays" in res.stdout, res.stdout
    groups = json.loads((run_dir / "manifest.json").read_text())["launches"][0]["groups"]
    tasks = groups[0]["tasks"]
    arrays = list(dict.fromkeys(t["job_id"].split("_")[0] for t in tasks))
    assert len(tasks) == 20 and len(arrays) == 3, tasks
    # the statistics job waits for all three arrays
    assert groups[1]["note"] == "afterok:" + ":".join(sorted(arrays)), groups[1]

    victim = next(t["job_id"] for t in tasks if t["label"] == "sims-17-17")  # in the third array
    deadline = time.time() + 300
    while _slurm("squeue", "-h", "-j", victim, "-o", "%T").strip() != "RUNNING":
        assert time.time() < deadline, f"{victim} never started"
        time.sleep(0.1)
    subprocess.run(["scancel", "--signal=KILL", "--full", victim], check=True, timeout=60)
    while _slurm("squeue", "-h", "-j", ",".join(arrays)).strip():
        assert time.time() < deadline + 300, "the arrays never left the queue"
        time.sleep(0.5)
    high = tmp_path / "data" / "karman_32x16.zarr"
    done = zarr.open_group(str(high), mode="r", use_consolidated=False)["complete"][:]
    assert done.tolist() == [True] * 17 + [False] + [True] * 2, done

    again = launch_cli(str(sweep), "--backend", "slurm", "--out", str(run_dir), "--wait")
    assert again.returncode == 0, again.stderr
    relaunch = json.loads((run_dir / "manifest.json").read_text())["launches"][1]["groups"]
    assert [t["label"] for t in relaunch[0]["tasks"]] == ["sims-17-17"] and relaunch[0]["already_done"] == 19
    group = zarr.open_group(str(high), mode="r")
    assert group["complete"][:].all() and "statistics" in group.attrs
    verify = run_module("fluidperc.datasets", "verify", str(tmp_path / "data"))
    assert verify.returncode == 0 and verify.stdout.count("checksums match for 20 sim(s)") == 2, verify.stdout
    status = status_cli(str(run_dir))
    assert status.returncode == 0, status.stderr
    assert "karman_32x16: 20/20 sims" in status.stdout, status.stdout
    rows = [line for line in status.stdout.splitlines() if line.split()[:2] == ["datagen", "datagen.karman_32x16"]]
    assert len(rows) == 1 and "COMPLETED 20" in rows[0], f"the three arrays should read as one group: {rows}"


TIME_LIMITED = """
name: tl
plugins: [slowlab]
train:
  data_dir: {data}
  tasks: [ae]
  datasets: [{{scene: karman, resolution: [32, 16], high_resolution: [64, 32]}}]
  losses: [slow_mse]
  seeds: [0]
  settings: {{steps: {steps}, batch_size: 3, checkpoint_every: 5000, validate_every: 5000}}
  resources: {{time_min: 1, cpus_per_task: 1, signal_s: 5}}
"""
# A loss of the test's own (a plugin, as a researcher would add one): MSE that waits 30 ms per call (once a step),
# so a step takes at least 30 ms of wall time whatever the core and the load, and about 9 ms of CPU. 4000 steps
# then need at least 120 s of training, more than two pieces hold (a piece is signalled about 42 s into its 1-minute
# limit), so the cell crosses at least two limits on any core. Alone (2026-12-08): 5 pieces of 35, 42, 42, 42 and
# 15 s, 4m18s, 100 CPU-s in all of the test's processes; with 20000 plain MSE steps it took about 340 CPU-s, 4
# pieces alone and 8 or 9 beside the other test groups (632 s), and a core 1.6 times as fast would have crossed one.
SLOW_LOSS = {
    "__init__.py": '''
"""slowlab: MSE that also spends wall time (time.sleep) in every call: a cell that is long in time, cheap in CPU."""
from typing import Literal

from pydantic import BaseModel, ConfigDict

from fluidperc.losses import LossEntry, register_loss


class SlowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["slow_mse"] = "slow_mse"

    @property
    def label(self) -> str:
        return "slow_mse"


register_loss(LossEntry("slow_mse", SlowSpec, "slowlab.loss:build", description="MSE, 30 ms per call"))
''',
    "loss.py": '''
import time

from fluidperc.losses.base import MSELoss


class SlowMSE(MSELoss):
    label = "slow_mse"

    def forward(self, pred, target, channels=None):
        time.sleep(0.03)
        return super().forward(pred, target, channels)


def build(spec, stats=None, store=None):
    return SlowMSE()
''',
}
STEPS = 4000
# signal_s 5: Slurm checks time limits every 30 s and signals at the first check that finds the job within signal_s
# + 30 s of its limit. With the default (20 s, a third of the limit) a piece that starts just after a check, as a
# requeued one does (the requeue at a check, cred_expire 15 s, sched_interval 2 s), is signalled 12 s in and trains
# for about 7 s (15 pieces and 7m26s alone, 2026-12-07); with 5 s it is signalled 43 s in (4 pieces, 3m22s).


# Hang guards, not timings: alone it takes about 4.5 minutes.
@pytest.mark.timeout(1800)
def test_a_cell_longer_than_its_time_limit_finishes_across_requeues_with_the_weights_of_an_uninterrupted_run(
        slurm_cluster, data_dir, tmp_path, launch_cli):
    site = tmp_path / "site" / "slowlab"
    site.mkdir(parents=True)
    for name, text in SLOW_LOSS.items():
        (site / name).write_text(text.lstrip())
    env = {**_env(), "PYTHONPATH": f"{site.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    sweep = tmp_path / "tl.yaml"
    sweep.write_text(TIME_LIMITED.format(data=data_dir, steps=STEPS))
    run_dir = tmp_path / "run"
    cell_dir = run_dir / "train" / "ae-karman_32x16-slow_mse-s0"
    launched = subprocess.Popen([sys.executable, "-m", "hpc.launch", str(sweep), "--backend", "slurm", "--out",
                                 str(run_dir), "--wait"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
    # the same cell, uninterrupted, beside it on the other core (the job's config, once the job has written it)
    deadline = time.time() + 600
    while not (cell_dir / "config.json").exists():
        assert time.time() < deadline and launched.poll() is None, "the job never started training"
        time.sleep(0.5)
    alone = tmp_path / "alone"
    reference = subprocess.run([sys.executable, "-m", "fluidperc.train", str(cell_dir / "config.json"), str(alone),
                                "--no-progress"], capture_output=True, text=True, timeout=1500, cwd=ROOT,
                               env={**env, "OMP_NUM_THREADS": "1"})
    assert reference.returncode == 0, reference.stderr[-2000:]
    deadline = time.time() + 1500
    while True:  # the launcher's --wait, failing at once if the node drains: the requeued job would never start
        try:
            out, err = launched.communicate(timeout=5)
            break
        except subprocess.TimeoutExpired:
            problems = slurm_node_problems()
            if problems or time.time() > deadline:
                launched.kill()
                queue = _slurm("squeue", "-h", "-o", "%i %T %r").strip()
                manifest = json.loads((run_dir / "manifest.json").read_text())
                ids = [t["job_id"] for g in manifest["launches"][0]["groups"] for t in g["tasks"]]
                subprocess.run(["scancel", *ids], timeout=60)  # the tests after this one find an empty queue
                pytest.fail(f"the node left service while the cell trained, so its requeued job cannot start: "
                            f"{problems}; squeue: {queue}" if problems else
                            f"the launcher was still waiting after 1500 s; squeue: {queue}")
    assert launched.returncode == 0, err[-3000:]

    job = json.loads((run_dir / "manifest.json").read_text())["launches"][0]["groups"][0]["tasks"][0]["job_id"]
    deadline = time.time() + 120
    while (states := _slurm("sacct", "-D", "-X", "-n", "-P", "-o", "State", "-j", job).split())[-1:] != ["COMPLETED"]:
        assert time.time() < deadline, f"accounting never recorded the end of {job}: {states}"
        time.sleep(1)  # accounting learns of the job's end some seconds after the launcher does
    assert states.count("REQUEUED") >= 2, f"{states}: it finished within two pieces, though its steps need 120 s"
    logs = "".join(p.read_text() for p in sorted((run_dir / "logs" / "train.ae").glob("*_log.*")))
    saved = [int(line.split()[4].rstrip(":")) for line in logs.splitlines()
             if line.startswith("checkpoint signal at step") and line.endswith("saved")]
    assert len(saved) >= 2, logs[-3000:]
    for step in saved:  # each piece went on from exactly where the signal stopped the one before
        assert f"resuming from step {step} " in logs, logs[-3000:]
    result = json.loads((cell_dir / "result.json").read_text())
    assert result["steps"] == STEPS and result["resumed_from_step"] == saved[-1]
    got = torch.load(cell_dir / "model.pt", weights_only=True)["model"]
    want = torch.load(alone / "model.pt", weights_only=True)["model"]
    gap = max(float((got[k] - want[k]).abs().max()) for k in want)
    assert gap <= 1e-5, f"the requeued cell ends {gap:.2e} from the uninterrupted one (DDP's tolerance is 1e-5)"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_JOB")}


@pytest.mark.timeout(300)
def test_a_launch_over_the_users_max_submit_jobs_is_refused_before_anything_is_submitted(slurm_cluster, tmp_path,
                                                                                          launch_cli):
    import getpass

    user = getpass.getuser()
    sweep = tmp_path / "arr.yaml"
    sweep.write_text(DATAGEN_20.format(data=tmp_path / "data"))
    subprocess.run(["sacctmgr", "-i", "modify", "user", user, "set", "MaxSubmitJobs=5"], check=True,
                   capture_output=True, timeout=60)
    try:
        res = launch_cli(str(sweep), "--backend", "slurm", "--out", str(tmp_path / "run"))
    finally:
        subprocess.run(["sacctmgr", "-i", "modify", "user", user, "set", "MaxSubmitJobs=-1"], check=True,
                       capture_output=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    message = res.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "would queue 21 job(s)" in message and "allows 5 (MaxSubmitJobs, per user)" in message, message
    assert "Nothing was submitted" in message
    manifest = tmp_path / "run" / "manifest.json"
    launches = json.loads(manifest.read_text())["launches"] if manifest.exists() else []
    assert all(not g["tasks"] for launch in launches for g in launch.get("groups", [])), launches
