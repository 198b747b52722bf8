"""The ``tune`` stage: one job (one Slurm allocation, one task per node) that runs a Ray cluster and the Tune
driver. Everything the trials will need (data, weights, a valid space) is checked here, before Ray starts."""

from __future__ import annotations

from pathlib import Path

from fluidperc.losses import missing_weights
from fluidperc.tasks import task_entry
from fluidperc.tasks.cell import CellConfig
from fluidperc.weights import WeightStore
from hpc.errors import UserError
from hpc.plan import JobGroup, Task
from hpc.space import domain_kind, grid_points, loss_options
from hpc.spec import Sweep, TuneStage
from hpc.stages.train import check_imported, data_dir, producers, store_dependencies

EXPERIMENT = "experiment"


def experiment_dir(run_dir: Path) -> Path:
    return Path(run_dir).resolve() / "tune" / EXPERIMENT


def base_cell(stage: TuneStage, data_dir: Path, plugins: tuple[str, ...] = ()) -> CellConfig:
    """The cell every trial starts from; the tune stage fixes length, reporting and the validation split."""
    entry = task_entry(stage.task)
    managed = {"steps": stage.epochs * stage.epoch_steps, "validate_every": stage.epoch_steps,
               "checkpoint_every": stage.epoch_steps, "val_sims": stage.val_sims,
               "val_rollout": stage.val_rollout if entry.rollout else None}
    ds = stage.dataset
    return CellConfig(plugins=tuple(plugins), task=stage.task, loss=stage.loss, **ds.cell_source(),
                      data_dir=str(data_dir), resolution=ds.resolution,
                      high_resolution=ds.high_resolution if entry.high_resolution else None, seed=stage.seed,
                      settings={**stage.settings.model_dump(), **managed})


def finished(run_dir: Path) -> bool:
    """tune.zarr is written when the experiment ends; trials that failed make a relaunch resume it."""
    path, report = run_dir / "tune.zarr", run_dir / "report" / "report.md"
    if not path.exists() or not report.exists() or report.stat().st_mtime < path.stat().st_mtime:
        return False
    import xarray as xr

    return int(xr.open_zarr(path).attrs.get("errored_trials", 1)) == 0


def trial_count(space: dict, num_samples: int) -> int:
    """Tune runs num_samples x (product of grid sizes) trials."""
    return num_samples * grid_points(space)


def usable_space(sweep: Sweep, dry_run: bool = False) -> dict:
    """The search space with loss options whose weights are missing dropped (missing_weights: skip, noted) or
    refused before anything starts (missing_weights: fail, the default)."""
    stage = sweep.tune
    store = WeightStore.from_env()
    space = dict(stage.space)

    def missing(option) -> str:
        m = missing_weights(option, store)
        if m is None:
            return ""
        return (f"loss '{m.label}' needs {', '.join(m.files)}, not in {', '.join(m.searched)}; fetch it with "
                f"`{m.fetch}` on a machine with internet access")

    kind = domain_kind(space.get("loss"))
    if kind in ("choice", "grid") and sweep.missing_weights == "skip":
        kept = []
        for option in space["loss"][kind]:
            why = missing(option)
            if why:
                print(f"note: tune: skipped {why}")
            else:
                kept.append(option)
        if not kept and dry_run:
            print("note: tune: a real launch stops here until the weights above are fetched")
            return space
        if not kept:
            raise UserError("tune: no loss in tune.space.loss has its weights staged; see the notes above. "
                            "Nothing was started.")
        space["loss"] = {kind: kept}
        return space
    for option in loss_options(space, stage.loss):
        why = missing(option)
        if why and dry_run:  # as for train cells: the plan shows, a real launch stops
            print(f"note: tune: {why}; a real launch stops here until it is fetched")
        elif why:
            raise UserError(f"tune: the search space includes {why}. Or drop that loss from tune.space.loss, or set "
                            "missing_weights: skip to leave such options out. Nothing was started.")
    return space


def plan(sweep: Sweep, run_dir: Path, dry_run: bool = False) -> list[JobGroup]:
    stage = sweep.tune
    assert stage is not None
    if task_entry(stage.task).high_resolution and stage.dataset.high_resolution is None:
        raise UserError(f"tune.dataset: task '{stage.task}' needs high_resolution (the target grid)")
    if stage.dataset.imported is not None:
        check_imported(sweep, stage.dataset, stage.task, stage.settings, "tune.dataset")
    stage = stage.model_copy(update={"space": usable_space(sweep, dry_run)})
    cell = base_cell(stage, data_dir(sweep, stage), tuple(sweep.plugins))
    made = producers(sweep)
    after = store_dependencies(cell, made, "tune", "tune")
    res = sweep.resources.merged(stage.resources).model_copy(update={"tasks_per_node": 1})
    if stage.trial_resources.cpus > res.cpus_per_task or stage.trial_resources.gpus > res.gpus_per_node:
        raise UserError(
            f"tune.trial_resources asks for {stage.trial_resources.cpus:g} cpus and {stage.trial_resources.gpus:g} gpus "
            f"per trial, more than one node of the allocation has ({res.cpus_per_task} cpus_per_task, "
            f"{res.gpus_per_node} gpus_per_node); no trial could ever start"
        )
    args = (stage.model_dump_json(exclude_unset=True), str(run_dir.resolve()), cell.model_dump_json(), res.cpus_per_task,
            res.gpus_per_node)
    tr = stage.trial_resources
    per_node = int(res.cpus_per_task // tr.cpus)
    if tr.gpus:
        per_node = min(per_node, int(res.gpus_per_node // tr.gpus))
    per_node = max(1, per_node)
    note = (f"Ray on {res.nodes} node(s), {trial_count(stage.space, stage.num_samples)} trial(s) x <= {stage.epochs} epochs, "
            f"~{per_node} at once per node")
    return [JobGroup("tune", "tune", "hpc.tune.job:TuneJob", [Task("ray-tune", args, done=finished(run_dir))], res,
                     after=sorted(after), note=note, progress={"unit": "tune", "run_dir": str(run_dir.resolve())})]


def progress(run_dir: Path) -> str:
    """Trials so far, from the run's own tune directory (hpc.status)."""
    if (run_dir / "tune.zarr").exists():
        import xarray as xr

        ds = xr.open_zarr(run_dir / "tune.zarr")
        best = ds.attrs.get("best_trial", "-")
        return f"{ds.sizes['trial']} trials finished ({int(ds.attrs.get('errored_trials', 0))} errored), best {best}"
    trials = list(experiment_dir(run_dir).glob("trial-*")) if experiment_dir(run_dir).exists() else []
    return f"{len(trials)} trial(s) started" if trials else "not started"
