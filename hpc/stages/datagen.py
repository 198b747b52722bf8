"""The ``datagen`` stage: per dataset pair, ONE array of batched simulation tasks, then a statistics job."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from fluidperc.datasets import generate
from fluidperc.datasets.import_spec import ImportSpec
from fluidperc.datasets.importer import is_imported, open_mapped
from fluidperc.datasets.names import grid_name
from fluidperc.datasets.spec import DatasetSpec
from fluidperc.datasets.store import (
    broken_note,
    check_existing,
    completed,
    has_statistics,
)
from hpc.errors import UserError
from hpc.plan import JobGroup, Task
from hpc.spec import Sweep


def data_dir(sweep: Sweep) -> Path:
    assert sweep.datagen is not None
    return Path(sweep.datagen.data_dir).resolve()


def check_writable(path: Path) -> None:
    """The nearest existing ancestor must be a writable directory (the stores are created under it)."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"datagen.data_dir: {path} cannot be created or written ({probe} is not a writable directory)")


def group_name(spec: DatasetSpec) -> str:
    ny, nx = spec.resolution
    return f"datagen.{grid_name(spec.scene, (ny, nx))}"


def prepare_stores(spec: DatasetSpec, root: Path) -> None:
    """Create both stores before the array runs (fluidperc.datasets.generate.prepare), imported when launching."""
    generate.prepare(spec, root)


def import_group_name(spec: ImportSpec) -> str:
    return f"datagen.import.{spec.name}"


def plan_import(spec: ImportSpec, i: int, sweep: Sweep, root: Path, dry_run: bool) -> JobGroup:
    """One job that maps the outside data onto a store pair (fluidperc.datasets.importer). Its path is made
    absolute here, where the sweep was launched from, since jobs may start elsewhere."""
    source = spec.resolved_path(Path.cwd()).resolve()
    spec = spec.model_copy(update={"path": str(source)})
    done = is_imported(spec, root)  # once imported, the source may go
    if not done and not source.exists():
        raise UserError(f"datagen.imports.{i}.path is {spec.path!r}, which does not exist; expected a Zarr store, a "
                        "NetCDF file or a folder of .npz frames")
    high, low = spec.store_paths(root)
    resources = sweep.resources.merged(sweep.datagen.resources)

    def prepare() -> None:
        """Before anything is submitted: the source holds what the spec maps (variables, dims, grid, sims)."""
        if not done:
            open_mapped(spec)

    return JobGroup(import_group_name(spec), "datagen", "fluidperc.datasets.importer:import_dataset",
                    [Task("import", (spec.model_dump_json(), str(root), tuple(sweep.plugins)), done=done,
                          output=str(low))],
                    resources, note=f"{source} -> {high.name} + {low.name}", prepare=None if dry_run else prepare)


def plan(sweep: Sweep, run_dir: Path, dry_run: bool = False) -> list[JobGroup]:
    stage = sweep.datagen
    assert stage is not None
    root = data_dir(sweep)
    check_writable(root)
    seen: dict[Path, str] = {}
    groups = []
    for i, spec in enumerate(stage.imports):
        for path in spec.store_paths(root):
            seen[path] = f"datagen.imports.{i}"
        groups.append(plan_import(spec, i, sweep, root, dry_run))
    for i, spec in enumerate(stage.datasets):
        for path in spec.store_paths(root):
            if path in seen:
                raise UserError(f"datagen.datasets.{i}: store {path} is also written by {seen[path]}; use another data_dir")
            seen[path] = f"datagen.datasets.{i}"
        high, low = spec.store_paths(root)
        exist = check_existing(high, spec, "high", high) & check_existing(low, spec, "low", high)
        for path, which in ((high, "high"), (low, "low")):
            why = broken_note(path, spec, which, high)
            if why:
                print(f"note: {path} is broken ({why}) and holds no complete sim: it is rebuilt before the array runs")
        done = completed(high) & completed(low) if exist else None
        spec_json = spec.model_dump_json()
        tasks = [
            Task(label=f"sims-{g[0]}-{g[-1]}", args=(spec_json, str(root), g, stage.device, True,
                                                     tuple(sweep.plugins)),
                 done=done is not None and len(done) == len(spec.sims()) and bool(done[g].all()))
            for g in spec.task_groups()
        ]
        resources = sweep.resources.merged(stage.resources)
        name = group_name(spec)
        groups.append(JobGroup(name, "datagen", "fluidperc.datasets.generate:simulate_group", tasks, resources,
                               note=f"{len(spec.sims())} sims -> {high.name} + {low.name}",
                               prepare=functools.partial(prepare_stores, spec, root),
                               progress={"unit": "sims", "stores": [str(high), str(low)], "sims": len(spec.sims())}))
        stats_done = all(t.done for t in tasks) and has_statistics(high) and has_statistics(low)
        groups.append(JobGroup(f"{name}.stats", "datagen", "fluidperc.datasets.generate:finalize",
                               [Task("statistics", (spec_json, str(root), tuple(sweep.plugins)), done=stats_done)],
                               resources.model_copy(update={"time_min": min(resources.time_min, 60)}),
                               after=[name], note="mean/std/min/max over training sims"))
    return groups
