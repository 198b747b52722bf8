"""python -m fluidperc.analysis.merge: a retrained task's cells replace their own in a committed results.zarr, and
every other task's results stay as they were (the CPU study's SR run at 2000 steps lands this way)."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
import xarray as xr

from conftest import ROOT, run_module

BUNDLE_RESULTS = ROOT / "study" / "study_cpu" / "results.zarr.zip"


@pytest.fixture(scope="module")
def study_results(tmp_path_factory):
    """The committed study's results.zarr, unpacked from its bundle as a directory store."""
    path = tmp_path_factory.mktemp("study") / "results.zarr"
    with zipfile.ZipFile(BUNDLE_RESULTS) as zf:
        zf.extractall(path)
    return path


@pytest.mark.slow
def test_merge_takes_the_named_tasks_from_the_new_run_and_keeps_the_rest(tmp_path, study_results):
    STUDY = study_results
    base = xr.open_zarr(STUDY).load()
    # as an SR-only run makes it: no SOL, so no accuracy-vs-cost ladder (its variables span the rung dim)
    new = base.sel(task=["sr"]).drop_vars([v for v in base.variables if "rung" in base[v].dims]).copy(deep=True)
    # and its task names are 2 characters long, so its store encodes them that way ('sol' must not become 'so')
    new = new.assign_coords(task=np.array(["sr"])).drop_encoding()
    new["rel_l2"] = new.rel_l2 + 1.0
    cells = {k: v for k, v in json.loads(base.attrs["cells"]).items() if k.startswith("sr-")}
    cells = {k: f"/new/{k}.zarr" for k in cells}
    new.attrs = {**base.attrs, "cells": json.dumps(cells)}
    new_path, base_path = tmp_path / "new" / "results.zarr", tmp_path / "base" / "results.zarr"
    new.to_zarr(new_path, consolidated=True)
    shutil.copytree(STUDY, base_path)

    dry = run_module("fluidperc.analysis.merge", str(base_path), str(new_path), "--tasks", "sr", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"{len(cells)} cell(s) of sr" in dry.stdout
    assert xr.open_zarr(base_path).rel_l2.identical(base.rel_l2), "a dry run writes nothing"

    res = run_module("fluidperc.analysis.merge", str(base_path), str(new_path), "--tasks", "sr")
    assert res.returncode == 0, res.stderr
    merged = xr.open_zarr(base_path).load()
    assert list(merged.loss.values) == list(base.loss.values) and list(merged.task.values) == list(base.task.values)
    assert xr.open_zarr(new_path).task.dtype == "<U2", "the new store encodes its tasks as the SR-only run did"
    np.testing.assert_array_equal(merged.rel_l2.sel(task="sr").values, base.rel_l2.sel(task="sr").values + 1.0)
    assert merged.rung_grid.sel(task="sol").identical(base.rung_grid.sel(task="sol")), "the ladder is kept"
    assert merged.rung_grid.dtype.kind == "U" and set(merged.rung_grid.sel(task="sr").values.ravel()) == {""}
    for task in ("sol", "ae"):
        assert merged.rel_l2.sel(task=task).identical(base.rel_l2.sel(task=task)), task
        assert merged.val_rel_l2.sel(task=task).identical(base.val_rel_l2.sel(task=task)), task
    merged_cells = json.loads(merged.attrs["cells"])
    assert all(merged_cells[k] == v for k, v in cells.items())
    assert {k for k in merged_cells if not k.startswith("sr-")} == \
        {k for k in json.loads(base.attrs["cells"]) if not k.startswith("sr-")}
    report = run_module("fluidperc.analysis", str(base_path.parent), "--out", str(tmp_path / "report"),
                        "--no-animations")
    assert report.returncode == 0, report.stderr


def test_merge_refuses_a_task_the_new_run_lacks_and_a_folder_that_is_no_store(tmp_path, study_results):
    STUDY = study_results
    res = run_module("fluidperc.analysis.merge", str(STUDY), str(STUDY), "--tasks", "combined", "--dry-run")
    assert res.returncode == 2 and "--tasks names 'combined', which the new results do not hold" in res.stderr
    res = run_module("fluidperc.analysis.merge", str(STUDY), str(tmp_path), "--tasks", "sr", "--dry-run")
    assert res.returncode == 2 and f"{tmp_path} is not a results store" in res.stderr and "Traceback" not in res.stderr
