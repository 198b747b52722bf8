"""RESULTS.md reports a real run of the committed sweep: its cells are the ones sweeps/study_cpu.yaml plans, and
every table row on it regenerates from the committed bundles (study/) with python -m fluidperc.analysis."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import ROOT, run_module

RESULTS = ROOT / "RESULTS.md"
RUN = ROOT / "study" / "study_cpu"
TUNE_RUN = ROOT / "study" / "study_cpu_tune"
FIGURES = ROOT / "docs" / "results"


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|") and not set(line) <= set("|-: ")]


def _reported_cells(text: str) -> set[tuple[str, str, str]]:
    """(task, grid, loss) of the first table under each '## TASK on GRID' heading, baselines left out."""
    cells = set()
    for m in re.finditer(r"^## (SOL|AE|SR) on (\w+_\d+x\d+).*?\n(.*?)(?=^## |\Z)", text, re.S | re.M):
        table = next(block for block in m.group(3).strip().split("\n\n") if block.startswith("| loss |"))
        for row in _table_rows(table)[1:]:
            loss = row.split("|")[1].strip()
            if loss != "source":
                cells.add((m.group(1).lower(), m.group(2), loss))
    return cells


def test_every_table_row_of_results_md_regenerates_from_the_committed_run(tmp_path):
    for run, out in ((RUN, tmp_path / "study"), (TUNE_RUN, tmp_path / "tune")):
        res = run_module("fluidperc.analysis", str(run), "--out", str(out), "--no-animations")
        assert res.returncode == 0, res.stderr
    regenerated = set(_table_rows((tmp_path / "study" / "report.md").read_text()))
    regenerated |= set(_table_rows((tmp_path / "tune" / "report.md").read_text()))
    # the SR and AE reruns' cost tables come from the bundle's compute record, not from results.zarr
    for prefix, steps in (("sr-", "2000"), ("ae-", "4000")):
        pieces = run_module("fluidperc.analysis", "compute", str(RUN), "--prefix", prefix, "--steps", steps)
        assert pieces.returncode == 0, pieces.stderr
        regenerated |= set(_table_rows(pieces.stdout))
    # the GPU cell's timings come from the committed benchmark result (benchmarks/bench_gpu_cell.py)
    from benchmarks.bench_gpu_cell import markdown

    regenerated |= set(_table_rows(markdown(json.loads((ROOT / "benchmarks/results/bench_gpu_cell.json").read_text()))))
    rows = _table_rows(RESULTS.read_text())
    assert len(rows) > 80, "RESULTS.md holds the study's tables"
    stale = [row for row in rows if row not in regenerated and not row.startswith("| --- |")]
    stale = [row for row in stale if not row.startswith(("| data |", "| tasks |", "| losses |", "| cells |",
                                                         "| training |", "| metrics |", "| step |", "| datagen ",
                                                         "| λ tune ", "| train ", "| evaluate ", "| report ",
                                                         "| | |"))]
    assert not stale, f"rows of RESULTS.md that the committed results do not produce: {stale}"
    published = set(_table_rows((FIGURES / "report.md").read_text()))
    assert published <= regenerated, "docs/results/report.md's tables are the committed run's"
    figures = {p.name for p in (tmp_path / "study").glob("*.png")}
    assert {"error_vs_step_karman_64x32.png", "accuracy_vs_cost_sol_karman_64x32.png",
            "validation_sr_plume_64x64.png"} <= figures, "results.zarr alone makes the curves and the ladder"


def test_results_md_figures_exist_and_stay_under_2_mb():
    links = re.findall(r"\]\((docs/results/[^)]+\.png)\)", RESULTS.read_text())
    assert len(links) >= 10 and all((ROOT / link).is_file() for link in links), links
    assert sum(p.stat().st_size for p in FIGURES.rglob("*") if p.is_file()) <= 2 * 1024 * 1024


def test_results_md_reports_the_cells_study_cpu_plans_less_those_needing_imagenet_weights():
    from fluidperc.analysis import load
    from fluidperc.datasets.names import grid_name
    from fluidperc.losses.registry import get_entry
    from hpc.spec import load_sweep
    from hpc.stages.train import cells

    planned = cells(load_sweep(ROOT / "sweeps" / "study_cpu.yaml"))
    imagenet = {"vgg16", "alexnet", "squeezenet1_1"}

    def needs_imagenet(cell) -> bool:
        return bool(imagenet & set(get_entry(cell.loss_spec.name).weights(cell.loss_spec)))

    trained = [c for c in planned if not needs_imagenet(c)]
    expected = {(c.task, grid_name(c.scene, c.resolution), c.loss_spec.label) for c in trained}
    text = RESULTS.read_text()
    assert _reported_cells(text) == expected
    assert len(trained) == 60 and len(planned) - len(trained) == 30
    assert "**60 trained cells**" in text and "30 planned and skipped" in text
    assert "python -m fluidperc.weights fetch vgg16 alexnet" in text

    ds = load(RUN)
    held = set()
    for task in ds.task.values:
        for grid in ds.resolution.values:
            for loss in ds.loss.values:
                for seed in ds.seed.values:
                    values = ds.rel_l2.sel(task=task, resolution=grid, loss=loss, seed=seed).values
                    if np.isfinite(values).any() and str(loss) != "source":
                        held.add((str(task), str(grid), str(loss), int(seed)))
    assert held == {(c.task, grid_name(c.scene, c.resolution), c.loss_spec.label, c.seed) for c in trained}


@pytest.mark.parametrize("name", ["study_cpu", "study_cpu_tune"])
def test_the_committed_runs_sweep_is_the_committed_sweep_file(name, tmp_path):
    """The launcher saved the validated sweep (defaults filled in) beside the results; the bundle keeps it."""
    from fluidperc.analysis.bundle import manifest
    from hpc.spec import load_sweep

    (tmp_path / "sweep.yaml").write_text(manifest(ROOT / "study" / name)["sweep"])
    ran = load_sweep(tmp_path / "sweep.yaml")
    assert ran.model_dump() == load_sweep(ROOT / "sweeps" / f"{name}.yaml").model_dump()
