"""Dataset generation through the launcher: Zarr stores that xarray reads, relaunch after a SIGKILL, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from conftest import ROOT, node_drained

SWEEP = """
name: dg
datagen:
  data_dir: {data}
  resources: {{cpus_per_task: 1, time_min: 20}}
  datasets:
    - scene: {scene}
      resolution: {res}
      factor: 2
      train_reynolds: [1.0e5, 2.0e5, 3.0e5]
      test_reynolds: [2.5e5]
      steps: {steps}
      keep_from: {keep}
      sims_per_task: 1
      frames_per_chunk: {chunk}
"""


def sweep_file(tmp_path: Path, scene="karman", res="[32, 16]", steps=24, keep=8, chunk=4) -> Path:
    path = tmp_path / "dg.yaml"
    path.write_text(SWEEP.format(data=tmp_path / "data", scene=scene, res=res, steps=steps, keep=keep, chunk=chunk))
    return path


def check_store(path: Path, sims: int, frames: int, ny: int, nx: int) -> xr.Dataset:
    ds = xr.open_zarr(path)
    assert dict(ds.sizes) == {"sim": sims, "frame": frames, "y": ny, "x": nx, "x_face": nx - 1, "y_face": ny + 1}
    for coord in ("reynolds", "seed", "viscosity", "reynolds_ud", "is_test", "time", "x_face", "y_face"):
        assert coord in ds.coords
    assert bool(ds.complete.all())
    assert np.isfinite(ds.velocity_y.values).all()
    assert set(ds.attrs["statistics"]) == {"velocity_x", "velocity_y", "marker"}
    assert ds.attrs["versions"]["phiflow"] == "3.4.0"
    np.testing.assert_allclose(ds.reynolds_ud.values, 20 / (1e4 / ds.reynolds.values))
    return ds


@pytest.mark.slow
def test_local_datagen_writes_high_and_downsampled_stores_that_xarray_reads(tmp_path, launch_cli):
    res = launch_cli(str(sweep_file(tmp_path, scene="karman")), "--backend", "local", "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr
    high = check_store(tmp_path / "data" / "karman_32x16.zarr", 4, 16, 32, 16)
    low = check_store(tmp_path / "data" / "karman_16x8.zarr", 4, 16, 16, 8)
    assert low.attrs["source"].startswith("downsampled") and "karman_32x16.zarr" in low.attrs["source"]
    assert high.is_test.values.tolist() == [False, False, False, True]
    assert high.sel(sim=high.reynolds == 2e5).sizes["sim"] == 1
    np.testing.assert_allclose(float(low.velocity_y.mean()), float(high.velocity_y.mean()), rtol=1e-2)


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_slurm_relaunch_with_wait_while_the_first_launch_is_queued_waits_for_its_jobs(slurm_cluster, tmp_path):
    sweep = sweep_file(tmp_path)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "hpc.launch", str(sweep), "--backend", "slurm", "--out", str(run_dir)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    groups = json.loads((run_dir / "manifest.json").read_text())["launches"][0]["groups"]
    # the node drained, so the jobs stay queued and the relaunch finds them in flight (a hold would do as well, but
    # --wait reports a held job rather than wait for it: tests/test_launcher.py)
    with node_drained("keeps the jobs queued") as node:
        again = subprocess.Popen([*cmd, "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        deadline = time.time() + 60
        while time.time() < deadline:  # the relaunch has recorded what it found before it starts waiting
            launches = json.loads((run_dir / "manifest.json").read_text())["launches"]
            if len(launches) == 2 and len(launches[1]["groups"]) == 2:
                break
            time.sleep(0.2)
        else:
            again.kill()
            pytest.fail("the relaunch never recorded its groups")
        time.sleep(3)  # past the relaunch's first looks at the queue (0 and 2 s)
        assert again.poll() is None, "the relaunch returned while the earlier launch's jobs were still queued"
    out, err = again.communicate(timeout=240)
    assert again.returncode == 0, err
    assert f"Nodes out of service: {node} (drained: keeps the jobs queued)" in err, err  # --wait said why it waited
    assert "4 still queued or running from an earlier launch" in launches[1]["groups"][0]["note"]
    assert [g["tasks"] for g in launches[1]["groups"]] == [[], []], "nothing may be submitted twice"
    check_store(tmp_path / "data" / "karman_32x16.zarr", 4, 16, 32, 16)


@pytest.mark.parametrize(
    "edit, message",
    [
        (("[32, 16]", "[33, 16]"), "resolution 33x16 is not divisible by the downsampling factor 2"),
        (("1.0e5, 2.0e5", "-1.0e5, 2.0e5"), "key 'datagen.datasets.0.train_reynolds.0' has value '-1.0e5': Input should be greater than 0"),
        (("scene: karman", "scene: vortex"), "key 'datagen.datasets.0.scene' has value 'vortex'"),
    ],
    ids=["resolution-not-divisible", "negative-reynolds", "unknown-scene"],
)
def test_bad_dataset_specs_fail_before_submission(edit, message, tmp_path, launch_cli):
    path = sweep_file(tmp_path)
    path.write_text(path.read_text().replace(*edit))
    res = launch_cli(str(path), "--backend", "local", "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


def test_unwritable_data_dir_fails_before_submission(tmp_path, launch_cli):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    path = sweep_file(tmp_path)
    path.write_text(path.read_text().replace(str(tmp_path / "data"), str(blocker / "data")))
    res = launch_cli(str(path), "--backend", "local", "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and "cannot be created or written" in res.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_existing_store_from_another_spec_is_refused(tmp_path, launch_cli):
    first = launch_cli(str(sweep_file(tmp_path, steps=12, keep=8)), "--backend", "local", "--out", str(tmp_path / "r1"))
    assert first.returncode == 0, first.stderr
    other = launch_cli(str(sweep_file(tmp_path, steps=16, keep=8)), "--backend", "local", "--out", str(tmp_path / "r2"))
    assert other.returncode == 2 and "made from a different spec" in other.stderr
