"""A researcher's own loss, in a package outside fluidperc: named under ``plugins:``, it trains a cell, is
evaluated as a metric, appears in the report, and is a Tune search option; fluidperc itself is not edited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

REGISTER = '''
"""mylab: registers a spectral loss (the |FFT| of each channel, L1), built lazily from mylab.spectral."""
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fluidperc.losses import LossEntry, register_loss


class SpectralSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["spectral"] = "spectral"
    cutoff: int = Field(0, ge=0, description="ignore wavenumbers below this")

    @property
    def label(self) -> str:
        return f"spectral-k{self.cutoff}"


register_loss(LossEntry("spectral", SpectralSpec, "mylab.spectral:SpectralLoss", metric={"name": "spectral"},
                        description="L1 distance of Fourier magnitudes"))
'''

IMPLEMENTATION = '''
import torch

from fluidperc.losses.base import FieldLoss


class SpectralLoss(FieldLoss):
    def __init__(self, spec, stats=None, store=None):
        super().__init__()
        self.cutoff = spec.cutoff
        self.label = spec.label

    def forward(self, pred, target, channels=None):
        fp, ft = (torch.fft.rfft2(x, norm="ortho").abs()[..., self.cutoff:] for x in (pred, target))
        return (fp - ft).abs().mean(dim=(0, 2, 3)).sum()
'''


@pytest.fixture
def plugin_env(tmp_path) -> dict[str, str]:
    pkg = tmp_path / "site" / "mylab"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(REGISTER))
    (pkg / "spectral.py").write_text(textwrap.dedent(IMPLEMENTATION))
    return {**os.environ, "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "PYTHONUNBUFFERED": "1"}


def write(path: Path, sweep: dict) -> Path:
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def base_sweep(tmp_path: Path) -> dict:
    return {
        "name": "plug",
        "plugins": ["mylab"],
        "resources": {"cpus_per_task": 1, "time_min": 20},
        "datagen": {"data_dir": str(tmp_path / "data"), "datasets": [{
            "scene": "karman", "resolution": [32, 16], "factor": 2, "train_reynolds": [1.0e5, 2.0e5, 3.0e5],
            "test_reynolds": [2.5e5], "steps": 14, "keep_from": 4, "sims_per_task": 4}]},
    }


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_loss_from_an_outside_package_trains_evaluates_and_reaches_the_report(tmp_path, plugin_env):
    sweep = base_sweep(tmp_path)
    sweep["train"] = {"tasks": ["ae"], "datasets": [{"scene": "karman", "resolution": [16, 8]}],
                      "losses": ["mse", {"name": "spectral", "cutoff": 1}], "seeds": [0],
                      "settings": {"steps": 3, "batch_size": 2, "validate_every": 3, "checkpoint_every": 3,
                                   "val_samples": 2}}
    sweep["evaluate"] = {"settings": {"frames": 2, "samples": 2}}
    path = write(tmp_path / "plug.yaml", sweep)
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "hpc.launch", str(path), "--backend", "local", "--out", str(run_dir)],
                         capture_output=True, text=True, cwd=ROOT, env=plugin_env, timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (run_dir / "train" / "ae-karman_16x8-spectral-k1-s0" / "result.json").is_file()
    import xarray as xr

    ds = xr.open_zarr(run_dir / "results.zarr")
    assert "spectral-k1" in ds.loss.values.tolist()
    assert "spectral" in ds.data_vars, list(ds.data_vars)  # evaluated as a metric, for every loss's cell
    assert bool(ds.spectral.sel(loss="mse").notnull().any()) and bool(ds.spectral.sel(loss="spectral-k1").notnull().any())
    report = (run_dir / "report" / "report.md").read_text()
    assert "spectral-k1" in report and "| spectral" in report.replace(" spectral |", "| spectral")


def test_a_plugin_loss_is_a_tune_search_option_and_an_unknown_plugin_is_refused(tmp_path, plugin_env):
    sweep = base_sweep(tmp_path)
    sweep["tune"] = {"task": "ae", "dataset": {"scene": "karman", "resolution": [16, 8]},
                     "space": {"loss": {"choice": ["mse", {"name": "spectral", "cutoff": 1}]},
                               "lr": {"loguniform": [1.0e-4, 1.0e-3]}},
                     "num_samples": 2, "epochs": 2, "epoch_steps": 2, "trial_resources": {"cpus": 1}}
    path = write(tmp_path / "plug.yaml", sweep)
    dry = subprocess.run([sys.executable, "-m", "hpc.launch", str(path), "--dry-run"], capture_output=True, text=True,
                         cwd=ROOT, env=plugin_env, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "tune" in dry.stdout and "trial(s)" in dry.stdout
    sweep["tune"]["space"]["loss"]["choice"][1]["cutoff"] = -2  # the plugin's own validation
    bad = subprocess.run([sys.executable, "-m", "hpc.launch", str(write(path, sweep)), "--dry-run"],
                         capture_output=True, text=True, cwd=ROOT, env=plugin_env, timeout=120)
    assert bad.returncode == 2 and "invalid options for loss 'spectral'" in bad.stderr and "cutoff" in bad.stderr
    sweep["plugins"] = ["mylab_missing"]
    missing = subprocess.run([sys.executable, "-m", "hpc.launch", str(write(path, sweep)), "--dry-run"],
                             capture_output=True, text=True, cwd=ROOT, env=plugin_env, timeout=120)
    assert missing.returncode == 2 and "plugin module 'mylab_missing' cannot be imported" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(600)
def test_tune_trains_trials_with_the_plugin_loss_on_a_local_ray(tmp_path, plugin_env):
    sweep = base_sweep(tmp_path)
    sweep["tune"] = {"task": "ae", "dataset": {"scene": "karman", "resolution": [16, 8]},
                     "settings": {"batch_size": 2, "val_samples": 2},
                     "space": {"loss": {"grid": ["mse", {"name": "spectral", "cutoff": 1}]}},
                     "num_samples": 1, "epochs": 2, "epoch_steps": 2, "trial_resources": {"cpus": 1}}
    path = write(tmp_path / "plug.yaml", sweep)
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "hpc.launch", str(path), "--backend", "local", "--out", str(run_dir)],
                         capture_output=True, text=True, cwd=ROOT, env=plugin_env, timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    import xarray as xr

    ds = xr.open_zarr(run_dir / "tune.zarr")
    assert sorted(ds.loss.values.tolist()) == ["mse", "spectral-k1"], ds.loss.values
    assert set(ds.status.values) <= {"completed", "stopped early"}


SCENE = '''
"""mylab.cavity: a closed 100 x 100 box whose fluid is stirred by a steady body force in the top band."""
from fluidperc.sim.scene_base import ScenePhysics
from fluidperc.sim.scenes import SceneEntry, SceneInfo, register_scene

INFO = SceneInfo(name="cavity", width=100.0, height=100.0, dt=0.5, steps=40,
                 velocity_boundary="closed box", marker_boundary="zero", obstacle="none",
                 characteristic_length=100.0, characteristic_velocity=0.1, description="stirred cavity")


class CavityPhysics(ScenePhysics):
    info = INFO

    def velocity_boundary(self):
        from phi.math import extrapolation
        return extrapolation.ZERO

    def constant_fields(self, grid, vbc):
        from phi import math
        from phi.field import StaggeredGrid
        from phi.geom import Box
        return {"stir": StaggeredGrid(Box(x=(0, 100), y=(80, 100)), vbc, **grid) * math.vec(x=0.05, y=0)}

    def marker_source(self, grid):
        from phi.field import CenteredGrid
        from phi.geom import Box
        return CenteredGrid(Box(x=(40, 60), y=(0, 10)), 0, **grid)

    def force(self, velocity, marker, fields, dt):
        return velocity + fields["stir"] * dt


register_scene(SceneEntry(INFO, "mylab.cavity:CavityPhysics", open_x=False, open_y=False))
'''


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_scene_from_an_outside_package_generates_a_dataset_that_trains_a_cell(tmp_path, plugin_env):
    (tmp_path / "site" / "mylab" / "cavity.py").write_text(textwrap.dedent(SCENE))
    sweep = {
        "name": "cav", "plugins": ["mylab.cavity"], "resources": {"cpus_per_task": 1, "time_min": 20},
        "datagen": {"data_dir": str(tmp_path / "data"), "datasets": [{
            "scene": "cavity", "resolution": [32, 32], "factor": 2, "train_reynolds": [1.0e4, 2.0e4],
            "test_reynolds": [1.5e4], "steps": 12, "keep_from": 2, "sims_per_task": 3}]},
        "train": {"tasks": ["ae"], "datasets": [{"scene": "cavity", "resolution": [16, 16]}], "losses": ["mse"],
                  "settings": {"steps": 2, "batch_size": 2, "validate_every": 2, "checkpoint_every": 2,
                               "val_samples": 2}},
    }
    path = write(tmp_path / "cav.yaml", sweep)
    res = subprocess.run([sys.executable, "-m", "hpc.launch", str(path), "--backend", "local", "--out",
                          str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT, env=plugin_env, timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    import xarray as xr

    ds = xr.open_zarr(tmp_path / "data" / "cavity_32x32.zarr")
    assert dict(ds.sizes)["x_face"] == 31 and dict(ds.sizes)["y_face"] == 31  # walls on every side
    assert float(abs(ds.velocity_x.isel(frame=-1)).max()) > 0, "the stirring force moved nothing"
    assert ds.attrs["scene"] == "cavity" and ds.attrs["domain"] == [100.0, 100.0]
    assert (tmp_path / "run" / "train" / "ae-cavity_16x16-mse-s0" / "result.json").is_file()
    unknown = subprocess.run([sys.executable, "-m", "hpc.launch", str(write(path, {**sweep, "plugins": []})),
                              "--dry-run"], capture_output=True, text=True, cwd=ROOT, env=plugin_env, timeout=120)
    assert unknown.returncode == 2 and "unknown scene 'cavity'; expected one of karman, plume" in unknown.stderr


BACKEND = """
    from hpc.backends import LocalBackend, register_backend


    class LabBackend(LocalBackend):
        \"\"\"The lab's own way to run jobs (here: the local one under another name).\"\"\"

        name = "lab"


    register_backend(LabBackend())
"""


@pytest.mark.slow
def test_a_backend_from_a_sweep_plugin_runs_the_sweep_and_answers_hpc_status(tmp_path, plugin_env):
    (tmp_path / "site" / "lab_backend.py").write_text(textwrap.dedent(BACKEND))
    sweep = write(tmp_path / "check.yaml", {"name": "labcheck", "plugins": ["lab_backend"],
                                           "resources": {"cpus_per_task": 1, "time_min": 5},
                                           "check": {"tasks": 2, "matmul_size": 32}})
    run = [sys.executable, "-m", "hpc.launch", str(sweep), "--out", str(tmp_path / "run")]
    res = subprocess.run([*run, "--backend", "lab"], capture_output=True, text=True, env=plugin_env, cwd=ROOT,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["launches"][0]["backend"] == "lab" and (tmp_path / "run" / "check" / "summary.json").exists()
    status = subprocess.run([sys.executable, "-m", "hpc.status", str(tmp_path / "run")], capture_output=True,
                            text=True, env=plugin_env, cwd=ROOT, timeout=60)
    assert status.returncode == 0 and "check.probe" in status.stdout and "note:" not in status.stdout, status.stdout
    wrong = subprocess.run([*run, "--backend", "labb"], capture_output=True, text=True, env=plugin_env, cwd=ROOT,
                           timeout=60)
    assert wrong.returncode == 2 and "unknown backend 'labb'; expected one of auto, slurm, local, debug, lab" in wrong.stderr


TASK_REGISTER = """
    from fluidperc.tasks import TaskEntry, register_task

    register_task(TaskEntry("denoise", "mylab.denoise_impl:Denoise", "a frame with seeded noise added -> the frame"))
"""

TASK_IMPLEMENTATION = """
    import torch
    from torch import nn

    from fluidperc.tasks.base import FrameModel, FrameTask
    from fluidperc.datasets.frames import channel_mean, channel_std


    class Denoise(FrameTask):
        def batch(self, data, sims, frames, horizon):
            x = data.low.centred[sims, frames]
            noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(int(frames.sum())))
            return {"input": x + 0.1 * x.std() * noise, "target": x}

        def build_model(self, cell, data, device):
            mean, std = channel_mean(data.low.stats, data.variable), channel_std(data.low.stats, data.variable)
            c = mean.shape[1]
            net = nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, c, 3, padding=1))
            return FrameModel(net, mean, std, mean, std).to(device)
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_task_from_an_outside_package_trains_evaluates_and_reaches_the_report(tmp_path, plugin_env):
    """A new task is one file with a Task subclass plus its registration: the planner, trainer, evaluation and
    report take it from the table; fluidperc is not edited."""
    (tmp_path / "site" / "mylab" / "denoise.py").write_text(textwrap.dedent(TASK_REGISTER))
    (tmp_path / "site" / "mylab" / "denoise_impl.py").write_text(textwrap.dedent(TASK_IMPLEMENTATION))
    sweep = {**base_sweep(tmp_path), "plugins": ["mylab.denoise"],
             "train": {"tasks": ["denoise"], "datasets": [{"scene": "karman", "resolution": [16, 8]}],
                       "losses": ["mse"],
                       "settings": {"steps": 4, "batch_size": 2, "validate_every": 2, "checkpoint_every": 2,
                                    "val_samples": 2}},
             "evaluate": {"settings": {"frames": 3, "samples": 2}}}
    path = write(tmp_path / "denoise.yaml", sweep)
    res = subprocess.run([sys.executable, "-m", "hpc.launch", str(path), "--backend", "local", "--out",
                          str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT, env=plugin_env, timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    import numpy as np
    import xarray as xr

    ds = xr.open_zarr(tmp_path / "run" / "results.zarr")
    assert list(ds.task.values) == ["denoise"] and list(ds.loss.values) == ["mse"], "no baseline: it has none"
    assert np.isfinite(ds.rel_l2).all() and ds.sizes["step"] == 3
    assert np.isfinite(ds.val_rel_l2).all() and list(ds.val_step.values) == [2, 4]
    text = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "## denoise on karman_16x8" in text and "| mse |" in text
    packed = {**sweep, "train": {**sweep["train"], "cells_per_task": 2}}  # a task that did not say it packs
    refused = subprocess.run([sys.executable, "-m", "hpc.launch", str(write(tmp_path / "packed.yaml", packed)),
                              "--dry-run"], capture_output=True, text=True, cwd=ROOT, env=plugin_env, timeout=120)
    assert refused.returncode == 2 and "task 'denoise' cannot train several cells at once" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    unknown = subprocess.run([sys.executable, "-m", "hpc.launch", str(write(path, {**sweep, "plugins": []})),
                              "--dry-run"], capture_output=True, text=True, cwd=ROOT, env=plugin_env, timeout=120)
    assert unknown.returncode == 2 and "unknown task 'denoise'; expected one of ae, sr, sol" in unknown.stderr
