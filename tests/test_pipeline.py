"""The whole pipeline (datagen -> train -> evaluate -> report) through the launcher, on Slurm and locally."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import LSIM_WEIGHTS

SWEEP = """
name: e2e
missing_weights: skip
resources: {{time_min: 20, cpus_per_task: 1}}
datagen:
  data_dir: {data}
  datasets:
    - scene: karman
      resolution: [64, 32]
      factor: 2
      train_reynolds: [1.0e+5, 3.0e+5, 6.0e+5]
      test_reynolds: [2.0e+5]
      steps: 40
      keep_from: 20
      sims_per_task: 2
train:
  tasks: [sol]
  datasets: [{{scene: karman, resolution: [32, 16]}}]
  losses: [mse, {{name: lsim, pad_to: [64, 64]}}{extra}]
  seeds: [0]
  settings: {{steps: 8, batch_size: 3, checkpoint_every: 4, validate_every: 4}}
evaluate:
  settings: {{rollout_steps: 8, samples: 3}}
"""
DIMS = ("task", "loss", "resolution", "seed", "test_sim", "step")


COMPOSITE = ",\n           {name: sum, terms: [{weight: 1.0, loss: mse}, {weight: 0.1, loss: {name: lsim, pad_to: [64, 64]}}]}"


def write_sweep(tmp_path: Path, composite: bool = False) -> Path:
    """The local run also trains a composite loss (mse + 0.1 lsim); the Slurm run keeps to two losses."""
    path = tmp_path / "e2e.yaml"
    path.write_text(SWEEP.format(data=tmp_path / "data", extra=COMPOSITE if composite else ""))
    return path


def check_results(run_dir: Path, composite: bool = False) -> None:
    from fluidperc.analysis import load

    ds = load(run_dir)
    assert ds.rel_l2.dims == DIMS and "lsim" in ds.loss.values and "source" in ds.loss.values
    assert dict(ds.sizes)["step"] == 8
    mse = ds.sel(task="sol", loss="mse").rel_l2
    assert np.isfinite(mse).all() and np.isfinite(ds.sel(task="sol", loss="source").rel_l2).all()
    assert ds.mean("seed").rel_l2.dims == ("task", "loss", "resolution", "test_sim", "step")
    report = run_dir / "report"
    text = (report / "report.md").read_text()
    if LSIM_WEIGHTS.is_file():
        assert np.isfinite(ds.sel(loss="lsim").rel_l2).all() and np.isfinite(ds.lsim.sel(loss="mse")).all()
        # one seed: the ratio to MSE is given, its interval is said to be unavailable
        assert "Ratio to MSE, with its 95% intervals" in text and "| lsim | " in text and "(n/a: 1 seed)" in text
        if composite:  # the composite loss trains, is evaluated and reported under its label, with its terms logged
            assert np.isfinite(ds.sel(loss="mse+0.1*lsim").rel_l2).all() and "| mse+0.1*lsim |" in text
            rows = (run_dir / "train" / "sol-karman_32x16-mse+0.1*lsim-s0" / "metrics.jsonl").read_text().splitlines()
            assert {"train_loss/mse", "train_loss/lsim"} <= set(json.loads(rows[-1]))
    else:  # a sum is skipped like the loss whose weights it lacks
        for label in ("lsim", "mse+0.1*lsim") if composite else ("lsim",):
            assert "fluidperc.weights fetch lsim" in ds.attrs["missing_cells"][f"sol-karman_32x16-{label}-s0"]
    assert "| loss | n | rel_l2 |" in text and "SOL improvement" in text
    # the validation curves travel with the results: every cell's val_* rows of metrics.jsonl, over val_step
    assert ds.val_rel_l2.dims == (*DIMS[:4], "val_step") and list(ds.val_step.values) == [4, 8]
    logged = [json.loads(row) for row in (run_dir / "train" / "sol-karman_32x16-mse-s0" / "metrics.jsonl")
              .read_text().splitlines() if "val_rel_l2" in row]
    assert [r["step"] for r in logged] == [4, 8]
    np.testing.assert_allclose(ds.val_rel_l2.sel(task="sol", loss="mse", seed=0).squeeze().values,
                               [r["val_rel_l2"] for r in logged])
    assert "val_rel_l2" not in text.split("Validation during training")[0], "curves are not an evaluation metric"
    # accuracy against cost: the plain sim at 32x16 (the source's grid) .. 64x32 (the high-res sim, which
    # reproduces the reference: the stores downsample the same way)
    ladder = ds.sel(task="sol", resolution="karman_32x16")
    assert [str(g) for g in ladder.rung_grid.values] == ["karman_32x16", "karman_40x20", "karman_48x24",
                                                          "karman_56x28", "karman_64x32"]
    assert ladder.ladder_rel_l2.mean(["test_sim", "step"]).values[-1] < 1e-5
    assert "### Accuracy against cost" in text and "- low-res sim + SOL (mse): " in text
    assert (report / "validation_sol_karman_32x16.png").stat().st_size > 1000
    assert "## Training settings per loss" in text
    assert "| sol | karman_32x16 | mse | 0.001 | constant | 3 | 4 | 8 | train.settings | s0: last (8) |" in text
    for png in ("error_vs_step_karman_32x16.png", "samples_sol_karman_32x16.png", "time_cost.png",
                "accuracy_vs_cost_sol_karman_32x16.png"):
        assert (report / png).stat().st_size > 1000 and f"]({png})" in text
    gif = report / "rollout_sol_karman_32x16.gif"
    assert 1000 < gif.stat().st_size < 1_000_000 and f"]({gif.name})" in text
    from PIL import Image

    with Image.open(gif) as im:  # every rollout step (8 < animation_frames); the reference and one panel per
        # loss (source included), each 16 px wide scaled up to at least 96 px
        shown = [loss for loss in ds.loss.values if np.isfinite(ds.sel(task="sol", loss=loss).rel_l2).any()]
        assert im.n_frames == 8 and im.width == 96 * (1 + len(shown))


@pytest.fixture
def weights_env(monkeypatch):
    if LSIM_WEIGHTS.is_file():
        monkeypatch.setenv("FLUIDPERC_WEIGHTS", str(LSIM_WEIGHTS.parent))


@pytest.mark.slurm
@pytest.mark.timeout(900)
def test_pipeline_runs_end_to_end_on_slurm_and_a_relaunch_submits_nothing(slurm_cluster, weights_env, tmp_path, launch_cli):
    sweep = write_sweep(tmp_path)
    res = launch_cli(str(sweep), "--backend", "slurm", "--out", str(tmp_path / "run"), "--wait", timeout=850)
    assert res.returncode == 0, res.stderr[-3000:]
    check_results(tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    groups = {g["name"]: g for g in manifest["launches"][0]["groups"]}
    assert groups["train.sol"]["note"].startswith("afterok:") and groups["evaluate.report"]["note"].startswith("afterok:")
    again = launch_cli(str(sweep), "--backend", "slurm", "--out", str(tmp_path / "run"))
    assert again.returncode == 0 and "nothing to submit" in again.stdout


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    import os
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("pipeline")
    env = {**os.environ, **({"FLUIDPERC_WEIGHTS": str(LSIM_WEIGHTS.parent)} if LSIM_WEIGHTS.is_file() else {})}
    res = subprocess.run([sys.executable, "-m", "hpc.launch", str(write_sweep(tmp, composite=True)), "--backend", "local", "--out",
                          str(tmp / "run")], capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp / "run", res.stdout


@pytest.mark.slow
def test_local_pipeline_prints_the_report_and_its_main_table(local_run):
    run_dir, stdout = local_run
    check_results(run_dir, composite=True)
    assert f"report: {run_dir / 'report' / 'report.md'}" in stdout and "sol on karman_32x16" in stdout


@pytest.mark.slow  # it reads the local pipeline's run (local_run)
def test_analysis_of_results_with_a_missing_cell_reports_the_reason(local_run, tmp_path):
    from fluidperc.analysis import load
    from fluidperc.analysis.report import write_report
    from fluidperc.evaluation.collect import collect

    run_dir, _ = local_run
    cells = [{"label": k, "task": "sol", "loss": k.split("-")[2], "seed": 0, "resolution": "karman_32x16",
              "eval_path": v} for k, v in load(run_dir).attrs["cells"].items()]
    cells.append({"label": "sol-karman_32x16-mae-s0", "task": "sol", "loss": "mae", "seed": 0,
                  "resolution": "karman_32x16", "eval_path": str(tmp_path / "nothing.zarr"),
                  "reason": "training failed: the mae loss is nan at step 3"})
    copy = tmp_path / "run"
    copy.mkdir()
    collect(str(copy), cells)
    ds = load(copy)
    assert np.isnan(ds.sel(loss="mae").rel_l2).all() and np.isfinite(ds.sel(loss="mse").rel_l2).all()
    assert ds.attrs["missing_cells"]["sol-karman_32x16-mae-s0"] == "training failed: the mae loss is nan at step 3"
    text = write_report(copy).read_text()
    assert "`sol-karman_32x16-mae-s0`: training failed: the mae loss is nan at step 3" in text
    from conftest import run_module

    res = run_module("fluidperc.analysis", str(copy), "--out", str(tmp_path / "docs"), "--no-animations")
    assert res.returncode == 0, res.stderr
    published = {p.name for p in (tmp_path / "docs").iterdir()}
    assert "report.md" in published and "samples_sol_karman_32x16.png" in published
    assert not any(name.endswith(".gif") for name in published) and ".gif" not in (tmp_path / "docs" / "report.md").read_text()


@pytest.mark.slow  # it reads the local pipeline's run (local_run)
def test_report_of_a_results_store_whose_evaluation_stores_are_gone_says_why_it_has_no_sample_frames(local_run, tmp_path):
    """A committed results.zarr travels without the per-cell stores its sample frames are drawn from."""
    import shutil

    from fluidperc.analysis import load
    from fluidperc.analysis.report import write_report
    from fluidperc.evaluation.collect import collect

    run_dir, _ = local_run
    cells = []
    for label, path in load(run_dir).attrs["cells"].items():
        moved = tmp_path / "eval" / Path(path).name
        shutil.copytree(path, moved)
        cells.append({"label": label, "task": "sol", "loss": label.split("-")[2], "seed": 0,
                      "resolution": "karman_32x16", "eval_path": str(moved)})
    copy = tmp_path / "run"
    copy.mkdir()
    collect(str(copy), cells)
    shutil.rmtree(tmp_path / "eval")
    text = write_report(copy).read_text()
    assert "Sample frames: not drawn, because the evaluation stores they come from are not on this machine" in text
    assert str(tmp_path / "eval") in text and "samples_sol_karman_32x16.png" not in text
    assert not (copy / "report" / "samples_sol_karman_32x16.png").exists()
    assert "| loss | n | rel_l2 |" in text, "the metrics still come from results.zarr"


def test_analysis_cli_has_help_and_a_clear_error_without_results_that_creates_nothing(tmp_path):
    from conftest import run_module

    assert run_module("fluidperc.analysis", "--help").returncode == 0
    res = run_module("fluidperc.analysis", str(tmp_path), "--out", str(tmp_path / "docs"))
    assert res.returncode == 2 and "holds neither results.zarr nor tune.zarr" in res.stderr
    assert "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == [], "a mistyped RUN_DIR leaves no empty report folder"


@pytest.mark.parametrize("scene,ny,nx,width,height", [("plume", 32, 32, 200.0, 200.0), ("karman", 32, 16, 100.0, 200.0)])
def test_report_vorticity_uses_each_scenes_own_domain(scene, ny, nx, width, height):
    """Solid-body rotation u = -w (y - y0), v = w (x - x0) has vorticity 2w everywhere, on any grid, only if the
    spacing is the scene's (the report once used Karman's 100 x 200 for the plume too)."""
    import numpy as np
    import xarray as xr

    from fluidperc.analysis.fields import sample_field

    omega = 0.01
    y = (np.arange(ny) + 0.5) * height / ny
    x = (np.arange(nx) + 0.5) * width / nx
    yy, xx = np.meshgrid(y, x, indexing="ij")
    uv = np.stack([-omega * (yy - height / 2), omega * (xx - width / 2)])[None]  # sample, channel, y, x
    ev = xr.Dataset({"sample_reference": (("sample", "channel", "y", "x"), uv)},
                    attrs={"resolution": f"{scene}_{ny}x{nx}", "scene": scene})
    w = sample_field(ev)(ev.sample_reference.values)
    np.testing.assert_allclose(w, 2 * omega, rtol=1e-6)
