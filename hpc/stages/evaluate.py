"""The ``evaluate`` stage: one array of evaluation tasks (one per trained cell), then one job that gathers them
into RUN_DIR/results.zarr and writes RUN_DIR/report/."""

from __future__ import annotations

from pathlib import Path

from fluidperc.datasets.names import grid_name
from fluidperc.train.outputs import is_current, is_done
from hpc.errors import UserError
from hpc.plan import Cell, JobGroup, Task, batch_label, chunks
from hpc.spec import Sweep
from hpc.stages.train import cell_dir, plan_cell, trainable_cells


def eval_path(run_dir: Path, label: str) -> Path:
    return run_dir.resolve() / "eval" / f"{label}.zarr"


def evaluated(out: Path, cell, run_dir: Path) -> bool:
    """The cell's evaluation exists and evaluated the model it will have: not when the cell (re)trains in this
    launch (a relaunch with more steps) or its model is newer than the evaluation."""
    train_dir = cell_dir(run_dir, cell)
    return is_done(train_dir, cell.settings.steps) and is_current(out, train_dir)


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


def finish(run_dir: str, cells: list[dict]) -> str:
    """Collect results.zarr, then write the report (one job: both are quick)."""
    from fluidperc.analysis.report import main_table, write_report  # torch, xarray, matplotlib: in the finishing
    from fluidperc.evaluation.collect import collect  # job, never in the planner

    collect(run_dir, cells)
    report = write_report(run_dir)
    print(f"report: {report}\n{main_table(run_dir)}")
    return str(report)


def combined_group(stage, trained, skipped, run_dir: Path, settings: str, res) -> tuple[JobGroup, list[dict]]:
    """One task per (loss, seed) with both a SOL cell and a marker SR cell on the combined pipeline's grid."""
    spec = stage.combined
    resolution = grid_name(spec.scene, spec.resolution)

    def on_grid(c, task):
        return c.task == task and c.scene == spec.scene and tuple(c.resolution) == tuple(spec.resolution)

    sols = [c for c in trained if on_grid(c, "sol")]
    srs = {(c.loss_spec.label, c.seed): c for c in trained if on_grid(c, "sr") and c.settings.variable == "marker"}
    if not sols or not srs:
        raise UserError(
            f"evaluate.combined: needs SOL cells and SR cells with variable: marker (task_settings.sr or the "
            f"dataset's settings) on {resolution}; "
            f"the train section has {len(sols)} SOL and {len(srs)} marker SR cell(s) there"
        )
    def entry(sol) -> dict:
        label = f"combined-{resolution}-{sol.loss_spec.label}-s{sol.seed}"
        return {"label": label, "task": "combined", "loss": sol.loss_spec.label, "seed": sol.seed,
                "resolution": resolution, "eval_path": str(eval_path(run_dir, label))}

    tasks, entries = [], []
    for sol in sols:
        e = entry(sol)
        sr = srs.get((sol.loss_spec.label, sol.seed))
        if sr is None:
            e["reason"] = f"no marker SR cell with loss {sol.loss_spec.label} and seed {sol.seed}"
        else:
            out = Path(e["eval_path"])
            tasks.append(Task(e["label"], ("combined", sol.model_dump_json(), str(cell_dir(run_dir, sol)),
                                           sr.model_dump_json(), str(cell_dir(run_dir, sr)), str(out), settings),
                              done=evaluated(out, sol, run_dir) and evaluated(out, sr, run_dir),
                              output=str(out)))
        entries.append(e)
    entries += [{**entry(cell), "reason": reason} for cell, reason in skipped if on_grid(cell, "sol")]
    group = JobGroup("evaluate.combined", "evaluate", "hpc.jobs:evaluate_pipeline", tasks, res, after=["train.sol", "train.sr"],
                     note=f"{len(tasks)} low-res+SOL+SR vs high-res sim comparisons",
                     progress={"unit": "comparisons evaluated"})
    group.cells = [Cell(e["label"], "combined", resolution, e["loss"], e["seed"], e.get("reason", "")) for e in entries]
    return group, entries


def plan(sweep: Sweep, run_dir: Path, dry_run: bool = False) -> list[JobGroup]:
    stage = sweep.evaluate
    assert stage is not None
    if sweep.train is None:
        raise UserError("evaluate: the sweep has no train section, so there are no cells to evaluate")
    trained, skipped = trainable_cells(sweep)
    settings = stage.settings.model_dump_json()
    res = sweep.resources.merged(stage.resources)
    tasks, entries, todo = [], [], []
    for cell in trained:
        out = eval_path(run_dir, cell.label)
        job = (cell.model_dump_json(), str(cell_dir(run_dir, cell)), str(out), settings)
        if evaluated(out, cell, run_dir):  # an evaluated cell stays a task of its own, never submitted
            tasks.append(Task(cell.label, ([job],), done=True, output=str(out)))
        else:
            todo.append((cell.label, job))
        entries.append({"label": cell.label, "task": cell.task, "loss": cell.loss_row, "seed": cell.seed,
                        "resolution": grid_name(cell.scene, cell.resolution), "eval_path": str(out),
                        "train_dir": str(cell_dir(run_dir, cell))})
    for cell, reason in skipped:
        entries.append({"label": cell.label, "task": cell.task, "loss": cell.loss_row, "seed": cell.seed,
                        "resolution": grid_name(cell.scene, cell.resolution),
                        "eval_path": str(eval_path(run_dir, cell.label)), "reason": reason})
    for batch in chunks(todo, stage.cells_per_task):
        tasks.append(Task(batch_label([label for label, _ in batch]), ([job for _, job in batch],),
                          output=tuple(job[2] for _, job in batch)))
    after = sorted({f"train.{c.task}" for c in trained})
    cells_group = JobGroup("evaluate.cells", "evaluate", "hpc.jobs:evaluate_cells", tasks, res, after=after,
                           note=f"{len(trained)} trained cells on held-out test sims"
                           + (f", up to {stage.cells_per_task} per job" if stage.cells_per_task > 1 else ""),
                           progress={"unit": "cells evaluated"},
                           cells=[plan_cell(c) for c in trained] + [plan_cell(c, r) for c, r in skipped])
    groups = [cells_group] if tasks or skipped else []
    if stage.combined is not None:
        group, combined_entries = combined_group(stage, trained, skipped, run_dir, settings, res)
        entries += combined_entries
        if group.tasks or group.cells:
            groups.append(group)
    results = run_dir / "results.zarr"
    report = run_dir / "report" / "report.md"
    newest_eval = max([_mtime(Path(e["eval_path"])) for e in entries] or [0.0])
    finished = results.exists() and report.exists() and _mtime(results) >= newest_eval and _mtime(report) >= _mtime(results)
    finished = finished and all(t.done for g in groups for t in g.tasks)  # a cell evaluated again: results.zarr too
    groups.append(JobGroup("evaluate.report", "evaluate", finish,
                           [Task("results+report", (str(run_dir.resolve()), entries), done=finished,
                                 output=str(report.resolve()))],
                           res.model_copy(update={"tasks_per_node": 1, "gpus_per_node": 0}),
                           after=[g.name for g in groups if g.tasks], note="results.zarr and report/",
                           progress={"unit": "report written"}))
    return groups
