"""A published run is a bundle of a handful of files: it reads as the run did, and a run continued from it on
another machine ends as an uninterrupted one."""

from __future__ import annotations

import json
import shutil
import warnings
import zipfile

import pytest

from conftest import ROOT, run_module
from fluidperc.analysis.bundle import MANIFEST, WEIGHTS, manifest, open_store, publish, restore, verify
from fluidperc.errors import UserError
from fluidperc.tasks.cell import CellConfig
from fluidperc.train import run
from fluidperc.train.outputs import is_done, read_pieces


def _cell(data_dir, steps: int, seed: int = 0) -> CellConfig:
    return CellConfig(task="sr", loss="mse", scene="karman", data_dir=str(data_dir), resolution=(32, 16),
                      high_resolution=(64, 32), seed=seed,
                      settings={"steps": steps, "batch_size": 3, "lr": 1e-3, "checkpoint_every": 5, "validate_every": 5})


@pytest.mark.slow
def test_a_run_continued_from_its_bundle_on_another_machine_ends_as_an_uninterrupted_run(data_dir, tmp_path):
    whole = run(_cell(data_dir, 20), tmp_path / "whole", progress=False)
    unfinished, finished = _cell(data_dir, 10), _cell(data_dir, 10, seed=1)
    first = tmp_path / "machine1"
    run(unfinished, first / "train" / unfinished.label, progress=False)  # stands for a cell stopped at step 10 of 20
    run(finished, first / "train" / finished.label, progress=False)
    (first / "train" / unfinished.label / "result.json").unlink()
    (first / "train" / unfinished.label / "model.pt").unlink()
    (first / "sweep.yaml").write_text("name: moved\n")
    bundle = publish(first, tmp_path / "bundle")
    assert sorted(p.name for p in bundle.iterdir()) == [MANIFEST, "curves.zarr.zip", WEIGHTS]
    with zipfile.ZipFile(bundle / WEIGHTS) as zf:
        assert sorted(zf.namelist()) == sorted([f"{finished.label}/model.pt", f"{unfinished.label}/checkpoint.pt"])
    with zipfile.ZipFile(bundle / "curves.zarr.zip") as zf:  # consolidated: one read opens it, with no warning
        assert json.loads(zf.read("zarr.json")).get("consolidated_metadata"), "curves.zarr is not consolidated"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert open_store(bundle, "curves.zarr").sizes["cell"] == 2
    doc = manifest(bundle)
    assert doc["sweep"] == "name: moved\n" and doc["cells"][finished.label]["result"]["steps"] == 10
    assert doc["cells"][unfinished.label]["pieces"][0] | {"start": 0, "to": 10} == doc["cells"][unfinished.label]["pieces"][0]
    model = (first / "train" / finished.label / "model.pt").read_bytes()
    shutil.rmtree(first)  # the machine is gone; only the bundle remains

    second = tmp_path / "machine2"
    assert restore(bundle, second) == {"cells": 2, "files": 10}
    assert is_done(second / "train" / finished.label, 10) and not is_done(second / "train" / unfinished.label)
    assert (second / "train" / finished.label / "model.pt").read_bytes() == model
    resumed = run(_cell(data_dir, 20), second / "train" / unfinished.label, progress=False)
    assert resumed["resumed_from_step"] == 10
    assert resumed["weights_sha256"] == whole["weights_sha256"]
    assert (second / "train" / unfinished.label / "metrics.jsonl").read_text() == \
        (tmp_path / "whole" / "metrics.jsonl").read_text(), "the curves come back byte for byte, then go on"
    assert [(p["start"], p["to"]) for p in read_pieces(second / "train" / unfinished.label)] == [(0, 10), (10, 20)]
    assert restore(bundle, second) == {"cells": 0, "files": 0}, "files already in the run directory win"

    again = publish(second, bundle)  # published again, now finished: its weights replace the checkpoint
    with zipfile.ZipFile(again / WEIGHTS) as zf:
        assert sorted(zf.namelist()) == sorted([f"{finished.label}/model.pt", f"{unfinished.label}/model.pt"])
    res = run_module("fluidperc.analysis", "compute", str(again))
    assert res.returncode == 0 and "| sr | karman_32x16 | mse | 2 |" in res.stdout, res.stdout + res.stderr


def test_a_damaged_bundle_is_refused_naming_what_differs_and_nothing_is_restored(tmp_path):
    run_dir = tmp_path / "run"
    cell = run_dir / "train" / "ae-karman_32x16-mse-s0"
    cell.mkdir(parents=True)
    (cell / "config.json").write_text("{}")
    (cell / "result.json").write_text('{"steps": 1}')
    (cell / "model.pt").write_bytes(b"weights" * 100)
    bundle = publish(run_dir, tmp_path / "bundle")
    assert verify(bundle) == []
    data = bytearray((bundle / WEIGHTS).read_bytes())
    data[data.index(b"weights") + 3] ^= 1
    (bundle / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"bundle is damaged \(weights.zip: sha256 differs\); nothing was restored"):
        restore(bundle, tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


def test_publish_refuses_a_destination_that_is_no_bundle_and_a_run_with_nothing_to_publish(tmp_path):
    (tmp_path / "run" / "train").mkdir(parents=True)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="exists and is no bundle"):
        publish(tmp_path / "run", tmp_path / "taken")
    with pytest.raises(UserError, match="holds no trained cell"):
        publish(tmp_path / "run", tmp_path / "new")
    assert not (tmp_path / "new").exists() and (tmp_path / "taken" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("verb", ["publish", "restore", "compute"])
def test_each_verb_has_help(verb):
    res = run_module("fluidperc.analysis", verb, "--help")
    assert res.returncode == 0 and f"python -m fluidperc.analysis {verb}" in res.stdout


def test_the_committed_study_is_a_bundle_of_at_most_20_files():
    files = [p for p in (ROOT / "study").rglob("*") if p.is_file()]
    assert len(files) <= 20, files
    assert verify(ROOT / "study" / "study_cpu") == [] and verify(ROOT / "study" / "study_cpu_tune") == []
