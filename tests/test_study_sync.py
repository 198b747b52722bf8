"""study/sync.sh carries a study's training across machines: what `save` commits and `restore` brings back lets
a fresh machine finish a cell where the last one stopped, as if it had never stopped."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from fluidperc.tasks.cell import CellConfig
from fluidperc.train import run
from fluidperc.train.outputs import is_done

SYNC = ROOT / "study" / "sync.sh"


def _cell(data_dir, steps: int, seed: int = 0) -> CellConfig:
    return CellConfig(task="sr", loss="mse", scene="karman", data_dir=str(data_dir), resolution=(32, 16),
                      high_resolution=(64, 32), seed=seed,
                      settings={"steps": steps, "batch_size": 3, "lr": 1e-3, "checkpoint_every": 5, "validate_every": 5})


def _sync(verb: str, run_dir, study_dir) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SYNC), verb, str(run_dir), str(study_dir)], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.slow
def test_saved_progress_restored_on_a_fresh_run_dir_finishes_as_an_uninterrupted_run(data_dir, tmp_path):
    whole = run(_cell(data_dir, 20), tmp_path / "whole", progress=False)
    unfinished, finished = _cell(data_dir, 10), _cell(data_dir, 10, seed=1)
    first = tmp_path / "machine1" / "train"
    run(unfinished, first / unfinished.label, progress=False)  # stands for a cell stopped at step 10 of 20
    run(finished, first / finished.label, progress=False)
    (first / unfinished.label / "result.json").unlink()
    (first / unfinished.label / "model.pt").unlink()
    study = tmp_path / "study"
    published = study / "train" / finished.label / "config.json"  # the record a report reads
    published.parent.mkdir(parents=True)
    published.write_text("{}")
    res = _sync("save", first.parent, study)
    assert res.returncode == 0 and "2 cell(s)" in res.stdout, res.stderr
    assert sorted(p.name for p in (study / "train" / unfinished.label).iterdir()) == [
        "checkpoint.pt", "checkpoint.pt.sha256", "metrics.jsonl"]
    assert sorted(p.name for p in (study / "train" / finished.label).iterdir()) == [
        "config.json", "metrics.jsonl", "model.pt", "model.pt.sha256", "result.json"]
    assert published.read_text() == "{}", "progress never rewrites the published run's config"
    shutil.rmtree(first.parent)  # the machine is gone; only what was saved remains

    second = tmp_path / "machine2"
    res = _sync("restore", second, study)
    assert res.returncode == 0 and "2 cell(s)" in res.stdout, res.stderr
    assert is_done(second / "train" / finished.label, 10) and not is_done(second / "train" / unfinished.label)
    resumed = run(_cell(data_dir, 20), second / "train" / unfinished.label, progress=False)
    assert resumed["resumed_from_step"] == 10
    assert resumed["weights_sha256"] == whole["weights_sha256"]
    assert (second / "train" / unfinished.label / "metrics.jsonl").read_text() == \
        (tmp_path / "whole" / "metrics.jsonl").read_text()

    res = _sync("save", second, study)  # now finished: the weights replace the checkpoint
    assert res.returncode == 0, res.stderr
    saved = study / "train" / unfinished.label
    assert json.loads((saved / "result.json").read_text())["steps"] == 20 and not (saved / "checkpoint.pt").exists()


def test_sync_names_the_missing_folder_and_the_usage(tmp_path):
    res = _sync("save", tmp_path / "no-run", tmp_path / "study")
    assert res.returncode == 2 and f"{tmp_path / 'no-run' / 'train'} does not exist" in res.stderr
    res = subprocess.run(["bash", str(SYNC), "push"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "usage: bash study/sync.sh save|restore" in res.stderr


@pytest.mark.slow
def test_save_records_each_training_job_of_a_cell_from_its_log(data_dir, tmp_path):
    """pieces.txt keeps, per job, the steps it trained and its progress bar's time: what a piece cost outlives
    the machine. Jobs are real `python -m fluidperc.train` processes writing their progress where a job log goes."""
    run_dir, study = tmp_path / "run", tmp_path / "study"
    out = run_dir / "train" / _cell(data_dir, 10).label
    for job, steps in (("101", 10), ("102", 20)):
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(_cell(data_dir, steps).model_dump_json())
        if steps == 20:  # the first job stands for one stopped at step 10: the second resumes its checkpoint
            (out / "result.json").unlink()
            (out / "model.pt").unlink()
        log = run_dir / "logs" / "train.sr" / f"{job}_0_log.err"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as err:
            subprocess.run([sys.executable, "-m", "fluidperc.train", str(out / "config.json"), str(out)],
                           stdout=subprocess.DEVNULL, stderr=err, check=True, timeout=300)
        if job == "102":  # first saved while it ran: its log then ended before the bar's first 20/20
            whole_log = log.read_bytes()
            log.write_bytes(whole_log[: whole_log.rindex(b"\r", 0, whole_log.index(b" 20/20 "))])
            res = _sync("save", run_dir, study)
            assert "1 new job record(s)" in res.stdout and "steps=10-" in pieces.read_text(), res.stdout
            assert "steps=10-20 " not in pieces.read_text(), "the half log stops short of the end"
            log.write_bytes(whole_log)
            res = _sync("save", run_dir, study)
            assert res.returncode == 0 and "0 new job record(s) in pieces.txt, 1 updated" in res.stdout, res.stdout
        else:
            res = _sync("save", run_dir, study)
            assert res.returncode == 0 and "1 new job record(s)" in res.stdout, res.stdout + res.stderr
        pieces = study / "train" / out.name / "pieces.txt"
    assert "0 new job record(s) in pieces.txt, 0 updated" in _sync("save", run_dir, study).stdout, \
        "a second save adds nothing"
    first = pieces.read_text().splitlines()[0]
    pieces.write_text(pieces.read_text().replace(first.split()[2], "code=0123abc", 1))  # saved at another HEAD
    res = _sync("save", run_dir, study)
    assert "0 new job record(s) in pieces.txt, 0 updated" in res.stdout, "a job is its log and first step"
    assert pieces.read_text().splitlines()[0].split()[2] == "code=0123abc", "the first save's code stays"
    lines = pieces.read_text().splitlines()
    fields = [dict(f.split("=", 1) for f in line.split()[1:]) for line in lines]
    assert [(f["steps"], f["log"]) for f in fields] == [("0-10", "101_0_log.err"), ("10-20", "102_0_log.err")]
    assert all(re.fullmatch(r"\d\d:\d\d", f["elapsed"]) and f["code"] != "unknown" for f in fields), lines
    summary = subprocess.run([sys.executable, str(ROOT / "study" / "pieces.py"), str(study), "--steps", "20"],
                             capture_output=True, text=True, timeout=60)
    minutes = sum(int(f["elapsed"][:2]) + int(f["elapsed"][3:]) / 60 for f in fields)
    assert summary.returncode == 0, summary.stderr
    assert f"| sr | karman_32x16 | mse | 1 | {minutes:.1f} | {minutes:.1f} |" in summary.stdout, summary.stdout
    short = subprocess.run([sys.executable, str(ROOT / "study" / "pieces.py"), str(study), "--steps", "30"],
                           capture_output=True, text=True, timeout=60)
    assert "0 cell(s) with a complete record" in short.stdout
    assert f"{out.name} (record covers steps 0-10, 10-20 of 0-30)" in short.stdout, short.stdout


def test_pieces_summary_names_a_malformed_record_and_a_missing_folder(tmp_path):
    cell = tmp_path / "train" / "sr-karman_32x16-mse-s0"
    cell.mkdir(parents=True)
    (cell / "pieces.txt").write_text("2026-12-03T11:38:41Z host=vm code=abc steps=0-20 elapsed=00:07 log=1.err\n"
                                     "half a line\n")
    res = subprocess.run([sys.executable, str(ROOT / "study" / "pieces.py"), str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "pieces.txt, line 2: 'half a line' is not a pieces.txt record" in res.stderr
    assert "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, str(ROOT / "study" / "pieces.py"), str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and f"{tmp_path / 'none' / 'train'} does not exist" in res.stderr
