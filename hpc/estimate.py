"""What a plan will cost, for the dry run: each train and evaluate group's wall time per job and in total, in
core-hours (GPU-hours on a GPU partition).

The figures are measured, never guessed:

- ``--estimate``: a calibration here. For each kind of job in the plan (a pack's shape: its task, data,
  settings and number of cells), the real trainer trains that job's first cells for a few steps in a temporary
  directory, with the job's threads, timing its steps and its validation; then the evaluation of one of them
  is timed. It needs the stores the cells read.
- Otherwise ``benchmarks/results/bench_pack.json``, when that benchmark ran on a machine like this one (same
  CPU model and core count): the median packed step of the same task, pack size and threads, scaled by the
  grid's cells where the grid differs. Validation and evaluation are not in it, so such an estimate says so.

Training time = steps x step time + validations x validation time; the estimate says which source it used.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc.measured import pack_benchmark
from hpc.plan import JobGroup, format_table

BENCH_GRID = 64 * 32  # bench_pack's low grid (Karman 64x32)
WARM, TIMED = 2, 3  # calibration steps: left out, then timed


@dataclass
class JobCost:
    seconds: float | None  # wall time of one job, None when nothing measured applies
    source: str
    notes: list[str] = field(default_factory=list)


def _interpolate(points: dict[int, float], k: int) -> float:
    """Step time at pack size k from measured sizes: linear between them, proportional beyond the largest."""
    ks = sorted(points)
    if k in points:
        return points[k]
    if k > ks[-1]:
        return points[ks[-1]] * k / ks[-1]
    lo = max(x for x in ks if x < k) if k > ks[0] else ks[0]
    hi = min(x for x in ks if x > k)
    return points[lo] + (points[hi] - points[lo]) * (k - lo) / (hi - lo)


def from_bench(cells: list[Any], threads: int, bench: dict[str, Any]) -> JobCost:
    """A pack's training time from the benchmark's packed steps at the same threads."""
    cell, k = cells[0], len(cells)
    rows = bench["rows"]
    if threads == 1:  # the benchmark's "2 packs": each process 1 thread and K/2 cells, side by side
        points = {r["k"] // 2: r["median_step_s"] for r in rows if r["task"] == cell.task and r["way"] == "2 packs"}
        points.update({1: r["median_step_s"] for r in rows if r["task"] == cell.task and r["way"] == "solo"
                       and r["k"] == 2})
    else:
        points = {r["k"]: r["median_step_s"] for r in rows if r["task"] == cell.task and r["way"] == "pack"
                  and r["threads"] == threads}
    if not points:
        return JobCost(None, "bench_pack.json", [f"no {cell.task} packs at {threads} thread(s) measured"])
    step = _interpolate(points, k)
    notes = ["training steps only: validation and start-up not measured"]
    cells_here = cell.resolution[0] * cell.resolution[1]
    if cells_here != BENCH_GRID:
        step *= cells_here / BENCH_GRID
        notes.append(f"scaled from 64x32 by grid cells ({cells_here})")
    if any(c.loss_spec.name != "mse" for c in cells):
        notes.append("measured with mse")
    return JobCost(step * cell.settings.steps, "bench_pack.json (this machine)", notes)


def calibrate(cells: list[Any], threads: int, eval_settings: str | None) -> tuple[JobCost, float | None]:
    """Train the pack's cells for a few steps here, timing its steps and a validation; then time one cell's
    evaluation (``eval_settings``, JSON; None: none)."""
    import torch

    from fluidperc.evaluation.evaluate import evaluate_cell
    from fluidperc.train.trainer import run_pack

    torch.set_num_threads(threads)
    steps = WARM + TIMED
    short = [c.model_copy(update={"settings": c.settings.model_copy(update={
        "steps": steps, "validate_every": steps, "checkpoint_every": steps})}) for c in cells]
    times: list[float] = []
    val: list[float] = []

    def hook(trainer) -> None:
        step, validate = trainer._train_step, trainer.validate

        def timed_step(*a):
            t0 = time.perf_counter()
            out = step(*a)
            times.append(time.perf_counter() - t0)
            return out

        def timed_validate(*a):
            t0 = time.perf_counter()
            out = validate(*a)
            val.append(time.perf_counter() - t0)
            return out

        trainer._train_step, trainer.validate = timed_step, timed_validate

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the libraries' deprecation notes are not the user's business here
        outs = [Path(tmp) / c.label for c in short]
        run_pack(short, outs, progress=False, trainer_hook=hook)
        per_step = statistics.median(times[WARM:])
        s = cells[0].settings
        seconds = per_step * s.steps + (s.steps // s.validate_every) * (val[0] if val else 0.0)
        evaluation = None
        if eval_settings is not None:
            t0 = time.perf_counter()
            evaluate_cell(short[0].model_dump_json(), str(outs[0]), str(Path(tmp) / "eval.zarr"), eval_settings)
            evaluation = time.perf_counter() - t0
    return JobCost(seconds, f"calibrated here ({per_step:.3f} s per step, {threads} thread(s))"), evaluation


def _job_cells(group: JobGroup) -> list[list[Any]]:
    from fluidperc.tasks.cell import CellConfig

    return [[CellConfig.model_validate_json(c) for c in t.args[0]] for t in group.pending]


def estimate(groups: list[JobGroup], calibrated: bool) -> str:
    """The cost block the dry run prints under the plan."""
    bench = None if calibrated else pack_benchmark()
    rows, notes = [], []
    eval_per_cell: dict[str, float] = {}  # task -> seconds per evaluated cell (calibration)
    eval_settings = next((g.tasks[0].args[0][0][3] for g in groups if g.name == "evaluate.cells" and g.tasks), None)
    for group in groups:
        if not group.pending or group.stage not in ("train", "evaluate") or group.name == "evaluate.report":
            continue
        res = group.resources
        threads = res.cpus_per_task
        costs: list[JobCost] = []
        if group.stage == "train":
            memo: dict[tuple[str, int], JobCost] = {}
            for cells in _job_cells(group):
                key = (cells[0].pack_key(), len(cells))
                if key not in memo:
                    if calibrated:
                        try:
                            memo[key], evaluation = calibrate(cells, threads, eval_settings)
                        except Exception as err:  # noqa: BLE001 - a calibration that cannot run says why
                            memo[key], evaluation = JobCost(None, "calibration", [f"could not run: {err}"]), None
                        if evaluation is not None:
                            eval_per_cell.setdefault(cells[0].task, evaluation)
                    elif bench is not None:
                        memo[key] = from_bench(cells, threads, bench)
                    else:
                        memo[key] = JobCost(None, "none", ["no benchmark from this machine; run with --estimate"])
                costs.append(memo[key])
        else:
            from fluidperc.tasks.cell import CellConfig

            for task in group.pending:
                jobs = task.args[0] if group.name == "evaluate.cells" else []
                per_cell = [eval_per_cell.get(CellConfig.model_validate_json(job[0]).task) for job in jobs]
                seconds = sum(per_cell) if per_cell and None not in per_cell else None
                costs.append(JobCost(seconds, "calibrated here" if seconds is not None else "none",
                                     [] if seconds is not None else ["evaluation not measured (--estimate times it)"]))
        known = [c.seconds for c in costs if c.seconds is not None]
        per_job = statistics.median(known) if known else None
        total = sum(known) if known else None
        gpus = res.gpus_per_node * res.nodes
        unit = "GPU-h" if gpus else "core-h"
        amount = (total or 0.0) / 3600 * (gpus if gpus else res.cpus_per_task * res.tasks_per_node * res.nodes)
        missing = len(costs) - len(known)
        rows.append([group.name, str(len(costs)), _hours(per_job), _hours(total) + (f" (+{missing} unmeasured)"
                     if missing and known else ""), f"{amount:.2f} {unit}" if known else "-",
                     costs[0].source if costs else "-"])
        for c in costs:
            for note in c.notes:
                line = f"{group.name}: {note}"
                if line not in notes:
                    notes.append(line)
    if not rows:
        return ""
    head = ("estimated cost (wall time of the jobs one after another; the local backend runs "
            "cores // cpus_per_task at once):")
    table = format_table(["group", "jobs", "per job", "all jobs", "cost", "from"], rows)
    return "\n".join([head, *("  " + line for line in table.splitlines()), *("  " + n for n in notes)])


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
