"""Nothing corrupts, nothing crashes: concurrent launches, a launcher killed at random moments, a file system
that fills up, broken stores found and mended, and a status that reports what the launch decided."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import ROOT, run_module

SWEEP = """
name: rel
datagen:
  data_dir: {data}
  resources: {{cpus_per_task: 1, time_min: 20}}
  datasets:
    - scene: karman
      resolution: [32, 16]
      factor: 2
      train_reynolds: [1.0e5, 2.0e5, 3.0e5]
      test_reynolds: [2.5e5]
      steps: {steps}
      keep_from: 4
      sims_per_task: {per_task}
      frames_per_chunk: 4
"""

TRAIN = """
train:
  resources: {{cpus_per_task: 1}}
  tasks: [ae]
  datasets: [{{scene: karman, resolution: [16, 8]}}]
  losses: [mse]
  seeds: [0]
  settings: {{steps: 4, batch_size: 2, checkpoint_every: 2, validate_every: 4, val_samples: 2}}
"""


def write_sweep(where: Path, data: Path, steps: int = 16, per_task: int = 1, train: bool = False) -> Path:
    path = where / "rel.yaml"
    path.write_text(SWEEP.format(data=data, steps=steps, per_task=per_task) + (TRAIN.format() if train else ""))
    return path


def launch_cmd(sweep: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hpc.launch", str(sweep), "--backend", "local", "--out", str(run_dir), *extra]


def store_arrays(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(path), mode="r", use_consolidated=False)
    return {name: group[name][:] for name in ("velocity_x", "velocity_y", "marker", "complete")}


def assert_stores_whole(data: Path) -> None:
    res = run_module("fluidperc.datasets", "verify", str(data))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PROBLEMS" not in res.stdout and res.stdout.count("4 complete sim(s), 0 incomplete") == 2, res.stdout
    assert res.stdout.count("checksums match for 4 sim(s)") == 2, res.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_launches_started_in_the_same_second_ten_times_never_corrupt_a_store(tmp_path):
    """The issue's first report: two launches on a fresh data dir corrupted the store for good. (The race is in
    preparing the stores, before any job runs: one datagen job per launch, all 4 sims, keeps each round short.)"""
    for round_ in range(10):
        where = tmp_path / f"round{round_}"
        where.mkdir()
        sweep = write_sweep(where, where / "data", steps=10, per_task=4)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        procs = [subprocess.Popen(launch_cmd(sweep, where / "run"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=ROOT, env=env) for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, f"round {round_}: {err[-2000:]}"
            assert "Traceback" not in err and "Traceback" not in out, err[-2000:]
        waited = [err for _, err in outs if "waiting for the other launch" in err]
        assert len(waited) == 1, [e[-500:] for _, e in outs]
        assert "host" in waited[0] and "pid" in waited[0] and "started" in waited[0]
        assert any("nothing to submit" in out for out, _ in outs), "the second launch found the work done"
        assert_stores_whole(where / "data")


def test_a_held_lock_stops_a_launch_with_the_holder_named_when_told_not_to_wait(tmp_path):
    from hpc.lock import LaunchLock

    sweep = write_sweep(tmp_path, tmp_path / "data")
    (tmp_path / "run").mkdir()
    lock = LaunchLock(tmp_path / "run", "the run directory")
    lock.acquire()
    try:
        res = subprocess.run(launch_cmd(sweep, tmp_path / "run", "--lock-timeout", "0"), capture_output=True,
                             text=True, cwd=ROOT, timeout=120)
    finally:
        lock.release()
    assert res.returncode == 2, res.stderr
    assert f"pid {os.getpid()}" in res.stderr and "in use by another launch" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").glob("*.zarr")), "nothing was prepared"


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_launcher_killed_at_twenty_random_moments_then_relaunched_equals_an_undisturbed_run(tmp_path):
    """kill -9 during prepare and submit (its local jobs die with it), relaunch, compare with a clean run."""
    clean = tmp_path / "clean"
    clean.mkdir()
    sweep = write_sweep(clean, clean / "data", steps=16, per_task=2, train=True)
    res = subprocess.run(launch_cmd(sweep, clean / "run"), capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]

    hurt = tmp_path / "hurt"
    hurt.mkdir()
    sweep = write_sweep(hurt, hurt / "data", steps=16, per_task=2, train=True)
    rng = random.Random(12)
    kills = 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(20):
        proc = subprocess.Popen(launch_cmd(sweep, hurt / "run"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=ROOT, text=True, env=env)
        for line in proc.stdout:  # the plan is printed just before the stores are prepared and jobs submitted
            if "on the local backend" in line:
                break
        time.sleep(rng.uniform(0.0, 0.6))  # somewhere in prepare (~0.25 s here) and submit
        if proc.poll() is None:
            proc.kill()
            kills += 1
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err[-3000:]
    assert kills == 20, f"only {kills} of 20 launches were still running when killed"
    time.sleep(1.5)  # the killed launchers' jobs notice within 0.5 s and kill themselves
    res = subprocess.run(launch_cmd(sweep, hurt / "run"), capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("karman_32x16.zarr", "karman_16x8.zarr"):
        a, b = store_arrays(clean / "data" / name), store_arrays(hurt / "data" / name)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}/{key}")
    assert_stores_whole(hurt / "data")
    results = [json.loads(next((d / "run" / "train").glob("*/result.json")).read_text()) for d in (clean, hurt)]
    assert results[0]["weights_sha256"] == results[1]["weights_sha256"]
    assert not [p for p in (hurt / "data").iterdir() if p.name.startswith(".") and "creating" in p.name], \
        "the relaunch did not clear the temporaries of store creations that were killed"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_datagen_into_a_full_file_system_fails_clearly_and_a_relaunch_after_freeing_space_completes(tmp_path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs (make test runs as root in CI)")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(small)], check=True)
    try:
        filler = small / "filler"
        filler.write_bytes(b"\0" * (4 << 20))
        sweep = write_sweep(tmp_path, small / "data", steps=70)  # 4 sims x 66 frames: ~2.6 MB in both stores
        res = subprocess.run(launch_cmd(sweep, tmp_path / "run"), capture_output=True, text=True, cwd=ROOT,
                             timeout=300)
        assert res.returncode in (1, 2), res.stdout[-2000:]
        assert "No space left on device" in res.stderr, res.stderr[-3000:]
        assert "Traceback" not in res.stderr
        for name in ("karman_32x16.zarr", "karman_16x8.zarr"):
            path = small / "data" / name
            if path.exists():
                arrays = store_arrays(path)
                for sim in np.flatnonzero(arrays["complete"]):  # a sim marked complete really is
                    for var in ("velocity_x", "velocity_y", "marker"):
                        assert np.isfinite(arrays[var][sim]).all(), f"{name}: sim {sim} marked complete with holes"
        filler.unlink()
        again = subprocess.run(launch_cmd(sweep, tmp_path / "run"), capture_output=True, text=True, cwd=ROOT,
                               timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        assert_stores_whole(small / "data")
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def _generate(tmp_path: Path) -> tuple[Path, Path]:
    """A whole pair of stores to break: the 4 sims in one job (each job process loads torch and PhiFlow)."""
    sweep = write_sweep(tmp_path, tmp_path / "data", steps=10, per_task=4)
    res = subprocess.run(launch_cmd(sweep, tmp_path / "run"), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return sweep, tmp_path / "data" / "karman_32x16.zarr"


@pytest.mark.slow
def test_a_store_missing_an_array_and_holding_no_complete_sim_is_rebuilt_by_the_relaunch(tmp_path):
    """The state the issue's race left behind: marker and coordinates, no velocity_x, for good."""
    sweep, high = _generate(tmp_path)
    shutil.rmtree(high / "velocity_x")
    group = zarr.open_group(str(high), mode="r+", use_consolidated=False)
    group["complete"][:] = False
    verify = run_module("fluidperc.datasets", "verify", str(tmp_path / "data"))
    assert verify.returncode == 1 and "array 'velocity_x' is missing" in verify.stdout, verify.stdout
    dry = run_module("hpc.launch", str(sweep), "--backend", "local", "--out", str(tmp_path / "run"), "--dry-run")
    assert "is broken (array 'velocity_x' is missing) and holds no complete sim: it is rebuilt" in dry.stdout
    res = subprocess.run(launch_cmd(sweep, tmp_path / "run"), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert_stores_whole(tmp_path / "data")


@pytest.mark.slow
def test_a_broken_store_with_complete_sims_is_refused_with_the_command_that_fixes_it(tmp_path):
    sweep, high = _generate(tmp_path)
    shutil.rmtree(high / "x")  # a coordinate lost: the complete sims' frames are still there
    res = subprocess.run(launch_cmd(sweep, tmp_path / "run"), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    message = res.stderr.strip()
    assert len(message.splitlines()) == 1
    assert str(high) in message and "array 'x' is missing" in message and "4 sim(s) marked complete" in message
    assert f"rm -r {high}" in message and "python -m fluidperc.datasets verify" in message
    assert (high / "velocity_x").exists(), "nothing was discarded"


@pytest.mark.slow
def test_verify_reports_complete_incomplete_and_non_finite_sims_per_store(tmp_path):
    _, high = _generate(tmp_path)
    group = zarr.open_group(str(high), mode="r+", use_consolidated=False)
    group["marker"][2, 3] = np.nan  # a sim marked complete with a hole
    group["complete"][1] = False
    res = run_module("fluidperc.datasets", "verify", str(tmp_path / "data"))
    assert res.returncode == 1
    lines = {Path(line.split(":")[0]).name: line for line in res.stdout.splitlines() if ".zarr:" in line}
    assert "3 complete sim(s), 1 incomplete, non-finite values in sims [2]" in lines["karman_32x16.zarr"]
    assert "4 complete sim(s), 0 incomplete, all complete sims finite" in lines["karman_16x8.zarr"]
    missing = run_module("fluidperc.datasets", "verify", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no such store or data directory" in missing.stderr


@pytest.mark.slow
def test_verify_finds_one_flipped_byte_in_one_chunk_and_names_its_sim_and_variable(tmp_path):
    _, high = _generate(tmp_path)
    low = high.with_name("karman_16x8.zarr")
    assert_stores_whole(tmp_path / "data")
    chunk = low / "velocity_x" / "c" / "1" / "0" / "0" / "0"  # sim 1, its first frames
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    res = run_module("fluidperc.datasets", "verify", str(tmp_path / "data"))
    assert res.returncode == 1, res.stdout
    lines = {Path(line.split(":")[0]).name: line for line in res.stdout.splitlines() if ".zarr:" in line}
    assert "CHECKSUM MISMATCH in sim 1 velocity_x: " in lines["karman_16x8.zarr"], res.stdout
    assert lines["karman_16x8.zarr"].count("sim ") == 1, "only the flipped sim is named"
    assert "checksums match for 4 sim(s)" in lines["karman_32x16.zarr"]


def test_dry_run_names_every_cell_with_its_seeds_and_the_reason_it_is_skipped(tmp_path):
    env = {**os.environ, "FLUIDPERC_WEIGHTS": str(tmp_path), "TORCH_HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "-m", "hpc.launch", "sweeps/sol_all_losses.yaml", "--dry-run", "--out",
                          str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "train.sol: 24 cell(s), 18 skipped" in out
    rows = [line.split() for line in out.split("train.sol:")[1].split("evaluate.cells:")[0].splitlines()[3:] if line]
    by_loss = {(r[1], r[2]): " ".join(r[3:]) for r in rows}
    assert by_loss[("karman_64x32", "mse")].startswith("0 1 2 to run 0 1 2")
    assert "skipped 0 1 2: LSiM.pth missing; fetch it with `python -m fluidperc.weights fetch lsim`" in \
        by_loss[("plume_64x64", "lsim")]
    assert "fetch vgg16" in by_loss[("karman_64x32", "lpips-vgg")]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_status_reports_what_the_launch_decided_per_group_not_its_own_environment(tmp_path, lsim_weights):
    """Launched with the LSiM weights staged and two training tasks; status runs without them."""
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(lsim_weights, weights / "LSiM.pth")
    sweep = tmp_path / "st.yaml"
    sweep.write_text(SWEEP.format(data=tmp_path / "data", steps=10, per_task=2) + """
missing_weights: skip
train:
  resources: {cpus_per_task: 1}
  tasks: [ae, sr]
  datasets: [{scene: karman, resolution: [16, 8], high_resolution: [32, 16]}]
  losses: [mse, {name: lsim, pad_to: [64, 64]}, {name: vgg, layer: relu3_3, pad_to: [64, 64]}]
  seeds: [0]
  settings: {steps: 2, batch_size: 2, checkpoint_every: 2, validate_every: 2, val_samples: 2}
""")
    env = {**os.environ, "FLUIDPERC_WEIGHTS": str(weights), "TORCH_HOME": str(tmp_path / "torch")}
    res = subprocess.run(launch_cmd(sweep, tmp_path / "run"), capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    clean_env = {k: v for k, v in os.environ.items() if k != "FLUIDPERC_WEIGHTS"}
    status = subprocess.run([sys.executable, "-m", "hpc.status", str(tmp_path / "run")], capture_output=True,
                            text=True, cwd=ROOT, env=clean_env, timeout=120)
    assert status.returncode == 0, status.stderr
    rows = {line.split()[1]: line for line in status.stdout.splitlines() if line.startswith("train ")}
    for task in ("ae", "sr"):
        assert "2/2 cells trained; 1 skipped" in rows[f"train.{task}"], status.stdout
        assert f"  train.{task}: 1 cell: vgg16-397923af.pth missing" in status.stdout, status.stdout
    assert "karman_32x16: 4/4 sims" in status.stdout
    assert max(map(len, status.stdout.splitlines())) <= 120, "hpc.status fits 120 columns"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_relaunch_with_more_steps_continues_each_cell_from_its_checkpoint_and_evaluates_it_again(tmp_path):
    """Train longer without starting over: a finished cell relaunched with a larger train.settings.steps resumes
    from its last checkpoint (the batch of step k depends only on the seed and k, so it ends where one longer run
    would), its evaluation is redone, and status counts neither as done before they are."""
    sweep = write_sweep(tmp_path, tmp_path / "data", steps=10, per_task=2, train=True)
    sweep.write_text(sweep.read_text() + "evaluate:\n  settings: {frames: 2, samples: 1}\n")
    run, cell = tmp_path / "run", tmp_path / "run" / "train" / "ae-karman_16x8-mse-s0"
    res = subprocess.run(launch_cmd(sweep, run), capture_output=True, text=True, cwd=ROOT, timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    first = json.loads((cell / "result.json").read_text())
    evaluation = run / "eval" / "ae-karman_16x8-mse-s0.zarr"
    evaluated_at = evaluation.stat().st_mtime
    assert first["steps"] == 4
    dry = subprocess.run(launch_cmd(sweep, run, "train.settings.steps=8", "--dry-run"), capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert dry.returncode == 0, dry.stderr
    groups = {line.split()[1]: line for line in dry.stdout.splitlines() if line.startswith(("train ", "evaluate "))}
    assert " 1/1 " in groups["train.ae"] and " 1/1 " in groups["evaluate.cells"], dry.stdout
    assert " 1/1 " in groups["evaluate.report"], "results.zarr and the report follow the cell's new evaluation"
    res = subprocess.run(launch_cmd(sweep, run, "train.settings.steps=8"), capture_output=True, text=True, cwd=ROOT,
                         timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    second = json.loads((cell / "result.json").read_text())
    assert second["steps"] == 8 and second["resumed_from_step"] == 4
    rows = [json.loads(line) for line in (cell / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9)), "the first 4 steps are kept, not trained again"
    assert evaluation.stat().st_mtime > evaluated_at
    assert (run / "results.zarr").stat().st_mtime >= evaluation.stat().st_mtime, "results.zarr holds the new evaluation"
    longer = tmp_path / "longer"
    res = subprocess.run(launch_cmd(sweep, longer, "train.settings.steps=8"), capture_output=True, text=True,
                         cwd=ROOT, timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    once = json.loads((longer / "train" / "ae-karman_16x8-mse-s0" / "result.json").read_text())
    assert once["weights_sha256"] == second["weights_sha256"], "continued training equals one longer run"
    again = subprocess.run(launch_cmd(sweep, run, "train.settings.steps=8", "--dry-run"), capture_output=True,
                           text=True, cwd=ROOT, timeout=120)
    assert "0/1" in next(line for line in again.stdout.splitlines() if line.startswith("train ")), again.stdout
