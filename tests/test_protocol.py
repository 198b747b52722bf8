"""The study protocol end to end on tiny data: declared validation sims, several test seeds and rollout starts,
keep: best, a cosine schedule, an lr grid and a sum's weight grid chosen among on validation, LSiM in its own
regime (resize_to 224), the new metrics and statistics in the report; then a second sweep trains each loss with
what the search chose (train.settings_from)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT

LSIM_224 = {"name": "lsim", "resize_to": [224, 224]}


def protocol_sweep(data: Path, **train) -> dict:
    return {
        "name": "protocol",
        "resources": {"cpus_per_task": 1, "time_min": 20},
        "datagen": {"data_dir": str(data), "datasets": [{
            "scene": "karman", "resolution": [32, 16], "factor": 2,
            "train_reynolds": [1.0e5, 3.0e5, 5.0e5], "train_seeds": [0],
            "val_reynolds": [2.0e5], "val_seeds": [500],
            "test_reynolds": [2.5e5], "test_seeds": [1000, 1001, 1002],
            "steps": 30, "keep_from": 8, "sims_per_task": 8, "frames_per_chunk": 22}]},
        "train": {
            "tasks": ["sol"], "datasets": [{"scene": "karman", "resolution": [16, 8]}],
            "losses": ["mse", {"name": "sum", "terms": [{"weight": 1.0, "loss": "mse"},
                                                        {"weight": [0, 0.1], "loss": LSIM_224}]}],
            "seeds": [0, 1],
            "settings": {"steps": 8, "batch_size": 2, "unroll": 2, "val_rollout": 4, "validate_every": 2,
                         "checkpoint_every": 4, "val_samples": 2, "schedule": "cosine", "warmup_steps": 2,
                         "keep": "best", "select_on": "val_rel_l2"},
            **train,
        },
        "evaluate": {"settings": {"rollout_steps": 4, "rollout_starts": 2, "frames": 2, "samples": 1,
                                  "animation_frames": 0, "ladder": []}},
    }


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_tiny_study_with_every_protocol_key_runs_end_to_end_and_a_second_sweep_trains_what_it_chose(
        tmp_path, lsim_weights):
    env = {"FLUIDPERC_WEIGHTS": str(lsim_weights.parent), "PYTHONUNBUFFERED": "1"}
    import os

    env = {**os.environ, **env}
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump(protocol_sweep(tmp_path / "data", grid={"lr": [1.0e-3, 3.0e-4]},
                                                    cells_per_task=6), sort_keys=False))
    run = tmp_path / "search"
    cmd = [sys.executable, "-m", "hpc.launch", str(search), "--backend", "local", "--out", str(run)]
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "mse+0*lsim-r224 lr=0.001" in dry.stdout and "12 cells in 2 jobs of up to 6" in dry.stdout, dry.stdout
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=800)
    assert res.returncode == 0, res.stderr[-3000:]

    import xarray as xr

    store = xr.open_zarr(tmp_path / "data" / "karman_16x8.zarr")
    assert store.split.values.tolist() == [0, 0, 0, 1, 2, 2, 2], "3 training, 1 validation, 3 test sims"
    ds = xr.open_zarr(run / "results.zarr")
    assert ds.sizes["test_sim"] == 6 and ds.trajectory_start.sel(resolution="karman_16x8").values.tolist()[:2] == [0, 17]
    assert sorted(set(ds.trajectory_sim.sel(resolution="karman_16x8").values.tolist())) == [0, 1, 2]
    for metric in ("nrmse", "pooled_rel_l2", "frmse_low", "vorticity_correlation", "high_correlation_time"):
        assert bool(np.isfinite(ds[metric].sel(task="sol", loss="mse lr=0.001")).all()), metric
    for cell in (run / "train").iterdir():
        result = json.loads((cell / "result.json").read_text())
        assert result["kept"] == "best" and result["select_on"] == "val_rel_l2" and result["kept_step"] in (2, 4, 6, 8)
        rows = [json.loads(line) for line in (cell / "metrics.jsonl").read_text().splitlines()]
        assert rows[0]["lr"] < rows[1]["lr"] and rows[-1]["lr"] < rows[2]["lr"], "warm-up, then cosine decay"
    report = (run / "report" / "report.md").read_text()
    for heading in ("## Selection on validation", "### sol on karman_16x8: mse+λ*lsim-r224",
                    "## Appendix: ratios to MSE per test sim", "## Training settings per loss"):
        assert heading in report, heading
    assert all(m in report for m in ("nrmse", "pooled_rel_l2", "frmse_low", "high_correlation_time"))
    assert "t [" in report and "sample standard deviation (ddof = 1)" in report
    assert "cosine, warm-up 2" in report and "best (val_rel_l2 at" in report
    assert "share of lsim" in report

    # the study: each loss family with the setting its search chose, on validation alone
    from fluidperc.analysis.selection import candidates, chosen

    groups = candidates(run)
    want = {family: chosen(group) for (task, grid, family), group in groups.items()}
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(protocol_sweep(tmp_path / "data", settings_from=str(run)), sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "hpc.launch", str(study), "--backend", "local", "--out",
                           str(tmp_path / "study"), "--dry-run"], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    cells = [line for line in done.stdout.splitlines() if line.startswith("  sol ")]
    labels = {line.split()[2] for line in cells}
    assert labels == {"mse", want["mse+λ*lsim-r224"].loss}, done.stdout
    from hpc.spec import load_sweep
    from hpc.stages.train import cells as plan_cells

    planned = plan_cells(load_sweep(study))
    assert {c.loss_spec.label for c in planned} == labels and len(planned) == 4
    for c in planned:
        family = "mse" if c.loss_spec.label == "mse" else "mse+λ*lsim-r224"
        assert c.settings.lr == want[family].settings["lr"]
        assert c.settings_source.startswith(f"search {run}: ") and "on validation" in c.settings_source


def test_a_sweep_refuses_settings_from_a_search_with_unfinished_cells_and_takes_it_once_all_are_done(tmp_path):
    """Choosing among part of a search would pick from whichever candidates finished first (the study v2 trains
    from a search published in pieces): settings_from names the unfinished cells until every planned one is done.
    The search run is written by hand, as a launch leaves it (sweep.yaml, each cell's config.json and
    result.json); nothing trains."""
    from hpc.errors import UserError
    from hpc.spec import load_sweep
    from hpc.stages.train import cells as plan_cells

    data = tmp_path / "data"
    search_dir = tmp_path / "search"
    (search_dir / "train").mkdir(parents=True)
    search = protocol_sweep(data, grid={"lr": [1.0e-3, 3.0e-4]}, losses=["mse"], seeds=[0])
    (search_dir / "sweep.yaml").write_text(yaml.safe_dump(search, sort_keys=False))
    planned = plan_cells(load_sweep(search_dir / "sweep.yaml"))
    assert [c.variant for c in planned] == ["lr=0.001", "lr=0.0003"]
    for cell in planned:  # both started; only the first has finished
        (search_dir / "train" / cell.label).mkdir()
        (search_dir / "train" / cell.label / "config.json").write_text(cell.model_dump_json())
    (search_dir / "train" / planned[0].label / "result.json").write_text(
        json.dumps({"steps": 8, "selected_value": 0.5, "select_on": "val_rel_l2"}))
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(protocol_sweep(data, losses=["mse"], settings_from=str(search_dir)),
                                    sort_keys=False))
    with pytest.raises(UserError) as err:
        plan_cells(load_sweep(study))
    message = str(err.value)
    assert "1 planned cell(s) unfinished" in message and planned[1].label in message, message
    assert f"--out {search_dir} --wait" in message
    # the same search published as a bundle (as study/study_v2_search is, in pieces): the same refusal, and the way
    # on is restore, relaunch, publish again, never a launch into the bundle itself
    from fluidperc.analysis.bundle import publish

    bundle = publish(search_dir, tmp_path / "search_bundle")
    study.write_text(yaml.safe_dump(protocol_sweep(data, losses=["mse"], settings_from=str(bundle)), sort_keys=False))
    with pytest.raises(UserError) as err:
        plan_cells(load_sweep(study))
    message = str(err.value)
    assert "1 planned cell(s) unfinished" in message and planned[1].label in message, message
    assert f"python -m fluidperc.analysis restore {bundle} RUN_DIR" in message and "publish RUN_DIR there again" in message
    assert f"--out {bundle}" not in message, message

    (search_dir / "train" / planned[1].label / "result.json").write_text(
        json.dumps({"steps": 8, "selected_value": 0.25, "select_on": "val_rel_l2"}))
    publish(search_dir, bundle)
    chosen = plan_cells(load_sweep(study))
    assert {c.settings.lr for c in chosen} == {3.0e-4}, "the lower validation score wins once both are done"


def _hand_search(where: Path, data: Path, lrs: list[float], scores: list[float], **settings) -> Path:
    """A finished search written as a launch leaves it (sweep.yaml, each cell's config.json and result.json)."""
    from hpc.spec import load_sweep
    from hpc.stages.train import cells as plan_cells

    sweep = protocol_sweep(data, grid={"lr": lrs}, losses=["mse"], seeds=[0])
    sweep["train"]["settings"].update(settings)
    (where / "train").mkdir(parents=True)
    (where / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    for cell, score in zip(plan_cells(load_sweep(where / "sweep.yaml")), scores, strict=True):
        (where / "train" / cell.label).mkdir()
        (where / "train" / cell.label / "config.json").write_text(cell.model_dump_json())
        (where / "train" / cell.label / "result.json").write_text(
            json.dumps({"steps": 8, "selected_value": score, "select_on": "val_rel_l2"}))
    return where


def test_settings_from_several_searches_chooses_among_their_pooled_candidates_and_refuses_what_cannot_be_pooled(
        tmp_path):
    """A grid widened by a second search (the study v2's AE, whose best lr was its grid's top): the candidates of
    both are chosen among as one search's. Refused: a candidate in both searches, and searches whose cells differ
    in more than their grids' keys (their scores would not be comparable). Nothing trains."""
    from hpc.errors import UserError
    from hpc.spec import load_sweep
    from hpc.stages.train import cells as plan_cells

    data = tmp_path / "data"
    first = _hand_search(tmp_path / "first", data, [3.0e-4, 1.0e-3], [0.6, 0.5])
    wider = _hand_search(tmp_path / "wider", data, [3.0e-3], [0.4])
    study = tmp_path / "study.yaml"

    def plan(*sources: Path):
        names = [str(s) for s in sources]
        study.write_text(yaml.safe_dump(protocol_sweep(data, losses=["mse"], settings_from=names), sort_keys=False))
        return plan_cells(load_sweep(study))

    alone = plan(first)
    assert {c.settings.lr for c in alone} == {1.0e-3} and alone[0].settings_source.startswith(f"search {first}: ")
    pooled = plan(first, wider)
    assert {c.settings.lr for c in pooled} == {3.0e-3}, "the wider search's lr scored best on validation"
    source = pooled[0].settings_source
    assert source.startswith(f"search {wider}: mse lr=0.003 of 3 (") and f"pooled with {first}" in source, source

    with pytest.raises(UserError) as err:
        plan(first, _hand_search(tmp_path / "again", data, [1.0e-3], [0.3]))
    assert "mse lr=0.001 on karman_16x8 is a candidate of both" in str(err.value), err.value
    with pytest.raises(UserError) as err:
        plan(first, _hand_search(tmp_path / "longer", data, [3.0e-3], [0.1], steps=16))
    message = str(err.value)
    assert "with other settings than their grids' (steps: 8 in " in message and "16 in " in message, message
    with pytest.raises(ValueError, match="lists .* more than once"):
        plan(first, first)
