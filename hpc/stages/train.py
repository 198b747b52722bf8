"""The ``train`` stage: task x dataset x loss x seed cells, one array per task, after the data they need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fluidperc.datasets.names import grid_name
from fluidperc.losses import missing_weights, parse_loss_spec
from fluidperc.tasks import task_entry
from fluidperc.tasks.cell import CellConfig
from fluidperc.tasks.settings import TrainSettings
from fluidperc.train.outputs import RESULT, is_done
from fluidperc.weights import WeightStore
from hpc.errors import UserError
from hpc.measured import best_pack_size, pack_benchmark
from hpc.plan import Cell, JobGroup, Task, batch_label, chunks
from hpc.spec import Sweep, load_sweep, parse_sweep
from hpc.stages.datagen import data_dir as datagen_dir
from hpc.stages.datagen import group_name, import_group_name


def data_dir(sweep: Sweep, stage=None) -> Path:
    """Where a stage (train by default; tune too) reads its stores: its own data_dir, else datagen's, else 'data'."""
    stage = stage or sweep.train
    assert stage is not None
    if stage.data_dir is not None:
        return Path(stage.data_dir).resolve()
    return Path(sweep.datagen.data_dir if sweep.datagen else "data").resolve()


def producers(sweep: Sweep) -> dict[Path, str]:
    """Store path -> the datagen statistics group that finishes it (training needs the statistics)."""
    if sweep.datagen is None:
        return {}
    root = datagen_dir(sweep)
    out = {}
    for spec in sweep.datagen.datasets:
        for path in spec.store_paths(root):
            out[path] = f"{group_name(spec)}.stats"
    for imp in sweep.datagen.imports:
        for path in imp.store_paths(root):
            out[path] = import_group_name(imp)
    return out


def store_dependencies(cell: CellConfig, made: dict[Path, str], who: str, stage_key: str) -> set[str]:
    """The datagen groups a cell's stores wait for; a store that neither exists nor is made here is refused
    (``who``: which cell or stage, ``stage_key``: where its data_dir is set)."""
    after = set()
    for name in filter(None, (cell.low_store, cell.high_store)):
        path = Path(cell.data_dir) / name
        if path in made:
            after.add(made[path])
        elif not path.exists():
            raise UserError(f"{who} needs {path}, which does not exist, and no datagen dataset in this sweep produces "
                            f"it; add one under datagen.datasets or point {stage_key}.data_dir at existing stores")
    return after


def check_imported(sweep: Sweep, ds, task: str, settings: TrainSettings, where: str) -> None:
    """A cell on an imported dataset: its task must not step a solver, and (when this sweep imports it) the
    import must hold the cell's field at the cell's grids."""
    if task_entry(task).rollout:
        raise UserError(f"{where}: task '{task}' steps the scene's solver, so it cannot train on the imported "
                        f"dataset '{ds.imported}'; list the other tasks under this dataset's tasks")
    spec = next((s for s in (sweep.datagen.imports if sweep.datagen else ()) if s.name == ds.imported), None)
    if spec is None:
        return  # imported by an earlier sweep: the plan checks that its stores exist
    if settings.variable not in spec.provides:
        raise UserError(f"{where}: task '{task}' trains on the {settings.variable}, which the import "
                        f"'{spec.name}' does not map (its variables: {', '.join(spec.variables)}); set "
                        f"variable: {spec.provides[0]} in this dataset's settings")
    grids = {tuple(spec.resolution), tuple(spec.low_resolution)}
    for key, grid in (("resolution", ds.resolution), ("high_resolution", ds.high_resolution)):
        if grid is not None and tuple(grid) not in grids:
            raise UserError(f"{where}.{key} is {list(grid)}, but the import '{spec.name}' makes the grids "
                            f"{list(spec.resolution)} and {list(spec.low_resolution)} (resolution // factor)")


def tuned_run(stage) -> Any:
    """What ``train.settings_from`` names: a tune run's results (tune.zarr), or a search run's candidates
    (fluidperc.analysis.selection: a train stage's grid, chosen among on validation), or several searches' pooled;
    None without it; a clear error when it is neither."""
    if stage.settings_from is None:
        return None
    if isinstance(stage.settings_from, str):
        return _settings_source(stage.settings_from)
    runs = [_settings_source(name) for name in stage.settings_from]
    tunes = [name for name, run in zip(stage.settings_from, runs) if not isinstance(run, SearchRun)]
    if tunes:
        raise UserError(f"train.settings_from lists {', '.join(map(repr, tunes))}, a tune run; only searches (train "
                        "stages with a grid) pool their candidates; name a tune run alone")
    from fluidperc.analysis.selection import pool

    try:
        groups = pool([run.groups for run in runs])
    except ValueError as err:
        raise UserError(f"train.settings_from {list(stage.settings_from)}: {err}") from None
    return SearchRun(Path(stage.settings_from[0]), groups)


def _settings_source(name: str) -> Any:
    """One run that settings_from names: a tune run's results, or a finished search's candidates."""
    path = Path(name)
    if (path / "tune.zarr").exists():
        from fluidperc.analysis.tuning import load_tune  # xarray, matplotlib: only with settings_from

        return load_tune(path)
    from fluidperc.analysis.bundle import cell_results, is_bundle  # only with settings_from

    if (path / "train").is_dir() or is_bundle(path):
        if not cell_results(path):
            raise UserError(f"train.settings_from names {name!r}, a run with no finished cell yet; "
                            "finish its training first (relaunch it with --wait)")
        unfinished = unfinished_search_cells(path)
        if unfinished:
            shown = ", ".join(unfinished[:3]) + (", ..." if len(unfinished) > 3 else "")
            how = (f"restore it (python -m fluidperc.analysis restore {name} RUN_DIR), relaunch the "
                   "search's sweep with --out RUN_DIR --wait, and publish RUN_DIR there again" if is_bundle(path)
                   else f"relaunch its sweep with --out {name} --wait")
            raise UserError(f"train.settings_from names {name!r}, a search with {len(unfinished)} planned "
                            f"cell(s) unfinished ({shown}); choosing among part of a search would pick from whichever "
                            f"candidates finished first. Finish it first: {how}")
        from fluidperc.analysis.selection import candidates

        return SearchRun(path, candidates(path))
    raise UserError(f"train.settings_from names {name!r}, which holds no tune.zarr and no trained cells; "
                    "expected the run directory (or bundle) of a finished tune stage or of a search (a train stage "
                    "with a grid)")


def unfinished_search_cells(path: Path) -> list[str]:
    """The cells a search's resolved sweep plans that have no result in it yet."""
    from fluidperc.analysis.bundle import cell_results, is_bundle, manifest  # xarray: only with settings_from

    if is_bundle(path):
        text = manifest(path).get("sweep")
        if not text:
            return []
        search = parse_sweep(path / "bundle.json", yaml.safe_load(text))  # written by publish from sweep.yaml
    elif (path / "sweep.yaml").is_file():
        search = load_sweep(path / "sweep.yaml")
    else:
        return []
    if search.train is None:
        return []
    done = cell_results(path)
    # with missing_weights: fail the search trained every cell; with skip, the cells whose weights are not here
    # either (never a failure of their own: a search run without them planned none of them)
    store = WeightStore.from_env()
    return [cell.label for cell in cells(search) if cell.label not in done
            and (search.missing_weights == "fail" or missing_weights(cell.loss_spec, store) is None)]


class SearchRun:
    """A finished search's candidates by (task, grid, family), and where they are."""

    def __init__(self, path: Path, groups: dict) -> None:
        self.path, self.groups = path, groups

    def best(self, task: str, grid: str, family: str):
        from fluidperc.analysis.selection import chosen, describe

        group = self.groups.get((task, grid, family))
        if not group:
            return None
        best = chosen(group)
        return best.loss_spec, dict(best.settings), describe(best, group, self.path)


def loss_settings(stage, task: str, loss: Any, tuned: Any, dataset: Any = None,
                  where: str = "", family: str = "") -> tuple[Any, dict[str, Any], str]:
    """(loss spec, settings overrides, where they came from) for one task and loss: train.settings,
    task_settings and the dataset's settings, then the tune run's best trial for the loss, then
    train.loss_settings by hand."""
    spec = parse_loss_spec(loss)
    overrides = dict(stage.task_settings.get(task, {}))
    source = f"train.task_settings.{task}" if task in stage.task_settings else "train.settings"
    if dataset is not None and dataset.settings:
        overrides.update(dataset.settings)
        source += f" + {where or 'the dataset'}.settings"
    if isinstance(tuned, SearchRun):
        grid = grid_name(dataset.name, dataset.resolution) if dataset is not None else ""
        family = family or spec.label
        best = tuned.best(task, grid, family)
        if best is None:
            source += f" (no finished {task} cell of {family} on {grid} in {stage.settings_from})"
        else:
            loss, chosen_settings, source = best[0], best[1], best[2]
            overrides.update(chosen_settings)
    elif tuned is not None and tuned.attrs.get("task") == task:
        from fluidperc.analysis.tuning import best_trial  # xarray, matplotlib: only with a tune run

        best = best_trial(tuned, spec.label, spec.name)
        if best is None:
            source += f" (no finished trial for {spec.label} in {stage.settings_from})"
        else:
            loss, source = best.loss, best.source(Path(stage.settings_from))
            overrides.update(best.settings)
    if spec.label in stage.loss_settings:
        overrides.update(stage.loss_settings[spec.label])
        source += f" + train.loss_settings.{spec.label}"
    return loss, overrides, source


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def grid_points(grid: dict[str, list[Any]]) -> list[tuple[dict[str, Any], str]]:
    """train.grid's combinations, each with its variant name (``lr=0.0003``); one empty point without a grid."""
    points: list[tuple[dict[str, Any], str]] = [({}, "")]
    for key, values in grid.items():
        points = [({**p, key: v}, ",".join(filter(None, (name, f"{key}={_value(v)}")))) for p, name in points
                  for v in values]
    return points


def cells(sweep: Sweep) -> list[CellConfig]:
    stage = sweep.train
    assert stage is not None
    root = data_dir(sweep)
    tuned = tuned_run(stage)
    out = []
    for task in stage.tasks:
        for i, ds in enumerate(stage.datasets):
            if ds.tasks is not None and task not in ds.tasks:
                continue
            needs_high = task_entry(task).high_resolution
            if needs_high and ds.high_resolution is None:
                raise UserError(f"train.datasets.{i}: task '{task}' needs high_resolution (the target grid) for {ds.name}")
            pairs = stage.expanded_losses()
            if isinstance(tuned, SearchRun):  # one loss per family: the search's choice
                pairs = list({family: (family, loss) for family, loss in pairs}.values())
            for family, loss in pairs:
                spec, overrides, source = loss_settings(stage, task, loss, tuned, ds, f"train.datasets.{i}", family)
                for point, variant in grid_points(stage.grid):
                    settings = TrainSettings.model_validate({**stage.settings.model_dump(), **overrides, **point})
                    if ds.imported is not None:
                        check_imported(sweep, ds, task, settings, f"train.datasets.{i}")
                    for seed in stage.seeds:
                        out.append(CellConfig(plugins=tuple(sweep.plugins), task=task, loss=spec, **ds.cell_source(),
                                              data_dir=str(root), resolution=ds.resolution,
                                              high_resolution=ds.high_resolution if needs_high else None,
                                              seed=seed, settings=settings,
                                              settings_source=source + (" + train.grid" if variant else ""),
                                              variant=variant,
                                              loss_family=(family if family != parse_loss_spec(spec).label
                                                           and not isinstance(tuned, SearchRun) else "")))
    return out


def trainable_cells(sweep: Sweep) -> tuple[list[CellConfig], list[tuple[CellConfig, str]]]:
    """Cells whose loss weights are present, and (with missing_weights: skip) the others with the reason.
    With missing_weights: fail (the default) a missing file stops the launch before anything is submitted."""
    store = WeightStore.from_env()
    ready, skipped = [], []
    for cell in cells(sweep):
        missing = missing_weights(cell.loss_spec, store)
        if missing is None:
            ready.append(cell)
            continue
        if sweep.missing_weights == "fail":
            raise UserError(
                f"train: loss '{missing.label}' needs {', '.join(missing.files)}, which is not in "
                f"{', '.join(missing.searched)}. Run `{missing.fetch}` on a machine with internet access, or set "
                "missing_weights: skip in the sweep to leave such cells out. Nothing was submitted."
            )
        skipped.append((cell, f"skipped: {missing.short}"))
    return ready, skipped


def cell_dir(run_dir: Path, cell: CellConfig) -> Path:
    return run_dir.resolve() / "train" / cell.label


def plan_cell(cell: CellConfig, skipped: str = "") -> Cell:
    """The row a plan shows for a cell (train and evaluate groups)."""
    ny, nx = cell.resolution
    return Cell(cell.label, cell.task, grid_name(cell.scene, (ny, nx)), cell.loss_row, cell.seed, skipped)


# train.cells_per_task: auto without a measurement for the job's machine (docs/training.md).
AUTO_CPU, AUTO_GPU = 4, 24


def pack_size(setting: int | str, cell: CellConfig, res) -> int:
    """train.cells_per_task for the jobs of ``cell``'s task: the number, or (auto) the size whose packs trained
    fastest in benchmarks/bench_pack.py on a machine like this one with the job's threads and memory."""
    if not task_entry(cell.task).packs:
        if setting not in ("auto", 1):
            raise UserError(f"train.cells_per_task is {setting}, but task '{cell.task}' cannot train several cells "
                            "at once (its entry says nothing of packs: no build_net); set train.cells_per_task: 1, "
                            "or auto (one cell per job for such a task)")
        return 1
    if setting != "auto":
        return int(setting)
    if res.gpus_per_node:
        return AUTO_GPU
    bench = pack_benchmark()
    best = best_pack_size(cell.task, res.cpus_per_task, res.mem_gb, bench) if bench else None
    return best or AUTO_CPU


def packs(cells: list[CellConfig], size: int) -> list[list[CellConfig]]:
    """Cells in jobs of at most ``size``: only cells that can share a step (CellConfig.pack_key) share one, in
    the order planned; a kind of cell is split into even jobs (7 cells at 4: 4 + 3, not 4 + 2 + 1)."""
    kinds: dict[str, list[CellConfig]] = {}
    for cell in cells:
        kinds.setdefault(cell.pack_key() if size > 1 else cell.label, []).append(cell)
    return [pack for group in kinds.values() for pack in chunks(group, size)]


def plan(sweep: Sweep, run_dir: Path, dry_run: bool = False) -> list[JobGroup]:
    stage = sweep.train
    assert stage is not None
    made = producers(sweep)
    groups: dict[str, JobGroup] = {}
    ready, skipped = trainable_cells(sweep)

    def group_of(cell: CellConfig) -> JobGroup:
        name = f"train.{cell.task}"
        if name not in groups:
            res = sweep.resources.merged(stage.resources).merged(stage.task_resources.get(cell.task))
            groups[name] = JobGroup(name, "train", "hpc.jobs:TrainJob", [], res, note="task x dataset x loss x seed cells",
                                    progress={"unit": "cells trained"})
        return groups[name]

    pending: dict[str, list[CellConfig]] = {}
    for cell in ready:
        after = store_dependencies(cell, made, f"train: cell {cell.label}", "train")
        group = group_of(cell)
        group.after = sorted(set(group.after) | after)
        out = cell_dir(run_dir, cell)
        group.cells.append(plan_cell(cell))
        if is_done(out, cell.settings.steps):  # a done cell stays a task of its own, never submitted
            group.tasks.append(Task(cell.label, ([cell.model_dump_json()], [str(out)]), done=True,
                                    output=str(out / RESULT)))
        else:
            pending.setdefault(group.name, []).append(cell)
    for name, todo in pending.items():
        group = groups[name]
        size = pack_size(stage.cells_per_task, todo[0], group.resources)
        for pack in packs(todo, size):
            outs = [cell_dir(run_dir, c) for c in pack]
            group.tasks.append(Task(batch_label([c.label for c in pack]),
                                    ([c.model_dump_json() for c in pack], [str(o) for o in outs]),
                                    output=tuple(str(o / RESULT) for o in outs), cells=[plan_cell(c) for c in pack]))
        if size > 1:
            group.note = f"{len(todo)} cells in {len(group.pending)} jobs of up to {size} (train.cells_per_task)"
    for cell, reason in skipped:
        group_of(cell).cells.append(plan_cell(cell, reason))
    return list(groups.values())
