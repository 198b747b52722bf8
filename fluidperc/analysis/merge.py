"""python -m fluidperc.analysis.merge: put one run's cells of some tasks into another run's results.zarr.

Why: a study retrains one task (the CPU study's SR at more steps) after the weights of the others are gone, so the
others cannot be evaluated again; their committed results are kept and the retrained task's replace its own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fluidperc.errors import UserError, run_cli
from fluidperc.evaluation.output import write_atomically

# Per-cell attributes, JSON objects keyed by cell label ("TASK-GRID-LOSS-sSEED").
CELL_ATTRS = ("missing_cells", "skipped_metrics", "cells")
# Labelled axes keep the base store's order (the report lists losses in it); numeric ones sort.
ORDERED = ("task", "loss", "resolution")


def _task_of(label: str) -> str:
    return label.split("-", 1)[0]


def _open(path: Path):
    import xarray as xr

    if not (path / ".zmetadata").exists() and not (path / "zarr.json").exists():
        raise UserError(f"{path} is not a results store; expected RUN_DIR/results.zarr from an evaluation stage "
                        "(python -m hpc.launch SWEEP.yaml)")
    return xr.open_zarr(path).load()


def replace_tasks(base, new, tasks: list[str]):
    """``base`` with every variable's ``tasks`` rows (and those cells' attributes) taken from ``new``."""
    for task in tasks:
        if task not in new.task.values:
            raise UserError(f"--tasks names '{task}', which the new results do not hold (their tasks: "
                            f"{', '.join(map(str, new.task.values))})")
    # non-index coordinates (the ladder's rung_grid, test_reynolds) merge as variables: combine_first drops them
    aux = sorted({str(c) for ds in (base, new) for c in ds.coords if c not in ds.indexes})
    base, new = base.reset_coords(), new.reset_coords()
    kept = base.drop_sel(task=[t for t in tasks if t in base.task.values])
    merged = new.sel(task=tasks).combine_first(kept)
    for name in merged.variables:  # a string variable one side lacks is NaN there; blank, as collect writes it
        if name in base.variables and base[name].dtype.kind == "U" and merged[name].dtype.kind == "O":
            merged[name] = merged[name].fillna("").astype(str)
    merged = merged.set_coords([c for c in aux if c in merged])
    order = {dim: list(dict.fromkeys([*map(str, base[dim].values), *map(str, new[dim].values)]))
             for dim in ORDERED if dim in merged.dims}
    merged = merged.reindex(order)
    # The stores' encodings describe the stores they were read from, not the merged one: a task coordinate read from
    # an SR-only run is encoded as 2-character strings, and writing 'sol' with it stored 'so'.
    merged = merged.drop_encoding()
    merged.attrs = dict(base.attrs)
    for key in CELL_ATTRS:
        old = json.loads(base.attrs.get(key, "{}"))
        fresh = json.loads(new.attrs.get(key, "{}"))
        entries = {k: v for k, v in old.items() if _task_of(k) not in tasks}
        entries.update({k: v for k, v in fresh.items() if _task_of(k) in tasks})
        merged.attrs[key] = json.dumps(entries)
    return merged


def main() -> int:
    p = argparse.ArgumentParser(
        prog="python -m fluidperc.analysis.merge",
        description="Replace the cells of --tasks in BASE (a results.zarr) with those of NEW, keep every other "
        "task's, and write the result to --out (default: BASE itself, swapped in whole). Then run "
        "python -m fluidperc.analysis on the folder that holds it.")
    p.add_argument("base", help="the results.zarr whose other tasks are kept, e.g. a restored bundle's RUN_DIR/results.zarr")
    p.add_argument("new", help="the results.zarr of the run that retrained --tasks, e.g. runs/study_cpu/results.zarr")
    p.add_argument("--tasks", required=True, help="comma-separated tasks to take from NEW, e.g. sr")
    p.add_argument("--out", help="where to write the merged store (default: BASE)")
    p.add_argument("--dry-run", action="store_true", help="print which cells would change and write nothing")
    args = p.parse_args()
    tasks = [t for t in args.tasks.split(",") if t]
    base, new = _open(Path(args.base)), _open(Path(args.new))
    merged = replace_tasks(base, new, tasks)
    before, after = json.loads(base.attrs.get("cells", "{}")), json.loads(merged.attrs["cells"])
    taken = sorted(k for k in after if _task_of(k) in tasks)
    dropped = sorted(k for k in before if _task_of(k) in tasks and k not in after)
    print(f"{len(taken)} cell(s) of {', '.join(tasks)} from {args.new}; {len(after) - len(taken)} other cell(s) "
          f"kept from {args.base}" + (f"; no longer held: {', '.join(dropped)}" if dropped else ""))
    if args.dry_run:
        return 0

    out = write_atomically(merged, args.out or args.base)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    run_cli(main, "fluidperc.analysis.merge")
