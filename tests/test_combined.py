"""The combined pipeline (low-res sim + SOL + SR against the high-res sim) end to end on a tiny plume, locally:
every path's accuracy and wall time land in results.zarr and the report, and the high-res path reproduces its
own reference."""

from __future__ import annotations

import pytest
import xarray as xr
import yaml

SWEEP = {
    "name": "combined_test",
    "resources": {"cpus_per_task": 1, "time_min": 20},
    "datagen": {"datasets": [{"scene": "plume", "resolution": [32, 32], "factor": 2, "train_reynolds": [1.0e5, 4.0e5],
                              "test_reynolds": [2.0e5], "steps": 30, "keep_from": 10, "sims_per_task": 3}]},
    "train": {"tasks": ["sol", "sr"], "datasets": [{"scene": "plume", "resolution": [16, 16], "high_resolution": [32, 32]}],
              "losses": ["mse"],
              "settings": {"steps": 10, "batch_size": 2, "unroll": 2, "checkpoint_every": 10, "validate_every": 10},
              "task_settings": {"sr": {"variable": "marker"}}},
    "evaluate": {"settings": {"rollout_steps": 8}, "combined": {"scene": "plume", "resolution": [16, 16]}},
}


def write(tmp_path, sweep) -> str:
    sweep = {**sweep, "datagen": {**sweep["datagen"], "data_dir": str(tmp_path / "data")}}
    path = tmp_path / "combined.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return str(path)


@pytest.mark.slow
def test_combined_pipeline_reports_accuracy_and_time_of_every_path(tmp_path, launch_cli):
    run_dir = tmp_path / "run"
    res = launch_cli(write(tmp_path, SWEEP), "--backend", "local", "--out", str(run_dir), timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    ds = xr.open_zarr(run_dir / "results.zarr").load()
    combined = ds.sel(task="combined", resolution="plume_16x16", seed=0)
    assert {"mse", "source", "high-res sim"} <= set(ds.loss.values)
    err = combined.rel_l2.mean(["test_sim", "step"])
    assert float(err.sel(loss="high-res sim")) < 1e-5, "the high-res sim must reproduce its own reference frames"
    assert 0 < float(err.sel(loss="mse")) < 1 and 0 < float(err.sel(loss="source")) < 1
    seconds = combined.seconds_per_frame
    assert all(float(seconds.sel(loss=p)) > 0 for p in ("mse", "source", "high-res sim"))
    # the resolution ladder: the plain sim at 16, 20, 24, 28 (default rungs) and 32 (the high-res sim itself)
    ladder = ds.sel(task="combined", resolution="plume_16x16")
    assert [str(g) for g in ladder.rung_grid.values] == [f"plume_{k}x{k}" for k in (16, 20, 24, 28, 32)]
    lad_err = ladder.ladder_rel_l2.mean(["test_sim", "step"]).values
    assert (ladder.ladder_seconds_per_frame > 0).all() and (lad_err[:-1] > 0).all() and lad_err[-1] < 1e-5
    assert lad_err[0] > lad_err[-2], "the finer plain sim is closer to the high-res one"
    report = (run_dir / "report" / "report.md").read_text()
    assert "## combined on plume_16x16" in report and "wall time per frame [ms]" in report
    assert "### Accuracy against cost" in report and "](accuracy_vs_cost_plume_16x16.png)" in report
    assert "- low-res + SOL + SR (mse): " in report and "- low-res + SR (source): " in report
    assert (run_dir / "report" / "accuracy_vs_cost_plume_16x16.png").stat().st_size > 1000
    # SOL's own ladder (velocity on the low grid, the same rungs): its top rung is the high-res sim brought onto the
    # low grid the way the stores downsample, so it reproduces SOL's reference
    sol = ds.sel(task="sol", resolution="plume_16x16")
    assert [str(g) for g in sol.rung_grid.values] == [f"plume_{k}x{k}" for k in (16, 20, 24, 28, 32)]
    sol_err = sol.ladder_rel_l2.mean(["test_sim", "step"]).values
    assert (sol.ladder_seconds_per_frame > 0).all() and (sol_err[:-1] > 0).all() and sol_err[-1] < 1e-5
    assert "](accuracy_vs_cost_sol_plume_16x16.png)" in report and "- low-res sim + SOL (mse): " in report
    for png in ("error_vs_step_combined_plume_16x16.png", "samples_combined_plume_16x16.png", "time_cost.png",
                "rollout_combined_plume_16x16.gif", "rollout_sol_plume_16x16.gif"):
        assert (run_dir / "report" / png).stat().st_size > 1000, png
    again = launch_cli(write(tmp_path, SWEEP), "--backend", "local", "--out", str(run_dir))
    assert again.returncode == 0 and "nothing to submit" in again.stdout


def test_combined_pipeline_without_marker_sr_cells_is_refused_before_submitting(tmp_path, launch_cli):
    sweep = yaml.safe_load(yaml.safe_dump(SWEEP))
    sweep["train"]["task_settings"] = {"sr": {"variable": "velocity"}}
    res = launch_cli(write(tmp_path, sweep), "--dry-run", "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and "evaluate.combined" in res.stderr and "variable: marker" in res.stderr
    assert not (tmp_path / "run").exists()


def test_equal_accuracy_speedup_interpolates_the_ladder_in_log_log_and_says_none_outside_it():
    import numpy as np

    from fluidperc.sim.ladder import default_rungs, equal_accuracy_speedup

    err, secs = np.array([0.4, 0.1, 0.025]), np.array([1.0, 4.0, 16.0])  # error falls as time^-1
    assert equal_accuracy_speedup(0.2, 1.0, err, secs) == pytest.approx(2.0)  # the ladder needs 2 s for 0.2
    assert equal_accuracy_speedup(0.05, 16.0, err, secs) == pytest.approx(0.5)  # a path slower than the ladder
    assert equal_accuracy_speedup(0.5, 1.0, err, secs) is None and equal_accuracy_speedup(0.01, 1.0, err, secs) is None
    assert default_rungs((64, 64), (128, 128)) == [(80, 80), (96, 96), (112, 112)]
    assert default_rungs((64, 32), (128, 64)) == [(80, 40), (96, 48), (112, 56)]
