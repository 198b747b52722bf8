"""The ``tune`` stage: one job (one Slurm allocation, one task per node) that runs a Ray cluster and the Tune
driver. Everything the trials will need (data, weights, a valid space) is checked here, before Ray starts."""

from __future__ import annotations

from pathlib import Path

from hpc.errors import UserError
from hpc.plan import JobGroup, Task
from hpc.spec import Sweep


def data_dir(sweep: Sweep) -> Path:
    stage = sweep.tune
    assert stage is not None
    if stage.data_dir is not None:
        return Path(stage.data_dir).resolve()
    return Path(sweep.datagen.data_dir if sweep.datagen else "data").resolve()


def finished(run_dir: Path) -> bool:
    """tune.zarr is written when the experiment ends; trials that failed make a relaunch resume it."""
    path, report = run_dir / "tune.zarr", run_dir / "report" / "report.md"
    if not path.exists() or not report.exists() or report.stat().st_mtime < path.stat().st_mtime:
        return False
    import xarray as xr

    return int(xr.open_zarr(path).attrs.get("errored_trials", 1)) == 0


def trial_count(space: dict, num_samples: int) -> int:
    """Tune runs num_samples x (product of grid sizes) trials."""
    from hpc.tune.space import domain_kind

    n = num_samples
    for value in space.values():
        if domain_kind(value) == "grid":
            n *= len(value["grid"])
    return n


def _check_weights(sweep: Sweep) -> None:
    from fluidperc.losses import weights_needed
    from fluidperc.losses.spec import parse_loss_spec
    from fluidperc.weights import FETCH_COMMAND, WeightStore
    from hpc.tune.space import loss_options

    stage = sweep.tune
    store = WeightStore.from_env()
    for option in loss_options(stage.space, stage.loss):
        spec = parse_loss_spec(option)
        missing = [w for w in weights_needed(spec) if not store.present(w)]
        if missing:
            files = ", ".join(store.entry(w).filename for w in missing)
            raise UserError(
                f"tune: the search space includes loss '{spec.label}', which needs {files}, not in "
                f"{', '.join(str(d) for d in store.dirs)}. Run `{FETCH_COMMAND} {' '.join(missing)}` on a machine with "
                "internet access, or drop that loss from tune.space.loss. Nothing was started."
            )


def plan(sweep: Sweep, run_dir: Path) -> list[JobGroup]:
    from hpc.stages.train import producers
    from hpc.tune.driver import base_cell
    from hpc.tune.job import TuneJob

    stage = sweep.tune
    assert stage is not None
    if stage.task == "sr" and stage.dataset.high_resolution is None:
        raise UserError("tune.dataset: task 'sr' needs high_resolution (the target grid)")
    _check_weights(sweep)
    cell = base_cell(stage, data_dir(sweep))
    made = producers(sweep)
    after = set()
    for name in filter(None, (cell.low_store, cell.high_store)):
        path = Path(cell.data_dir) / name
        if path in made:
            after.add(made[path])
        elif not path.exists():
            raise UserError(f"tune: needs {path}, which does not exist, and no datagen dataset in this sweep produces "
                            "it; add one under datagen.datasets or point tune.data_dir at existing stores")
    res = sweep.resources.merged(stage.resources).model_copy(update={"tasks_per_node": 1})
    if stage.trial_resources.cpus > res.cpus_per_task or stage.trial_resources.gpus > res.gpus_per_node:
        raise UserError(
            f"tune.trial_resources asks for {stage.trial_resources.cpus:g} cpus and {stage.trial_resources.gpus:g} gpus "
            f"per trial, more than one node of the allocation has ({res.cpus_per_task} cpus_per_task, "
            f"{res.gpus_per_node} gpus_per_node); no trial could ever start"
        )
    args = (stage.model_dump_json(exclude_unset=True), str(run_dir.resolve()), cell.model_dump_json(), res.cpus_per_task,
            res.gpus_per_node)
    per_node = max(1, int(res.cpus_per_task // stage.trial_resources.cpus))
    note = (f"Ray on {res.nodes} node(s), {trial_count(stage.space, stage.num_samples)} trial(s) x <= {stage.epochs} epochs, "
            f"~{per_node} at once per node")
    return [JobGroup("tune", "tune", TuneJob(), [Task("ray-tune", args, done=finished(run_dir))], res,
                     after=sorted(after), note=note)]


def progress(sweep: Sweep, run_dir: Path) -> str:
    from hpc.tune.driver import experiment_dir

    if (run_dir / "tune.zarr").exists():
        import xarray as xr

        ds = xr.open_zarr(run_dir / "tune.zarr")
        best = ds.attrs.get("best_trial", "-")
        return f"{ds.sizes['trial']} trials finished ({int(ds.attrs.get('errored_trials', 0))} errored), best {best}"
    trials = list(experiment_dir(run_dir).glob("trial-*")) if experiment_dir(run_dir).exists() else []
    return f"{len(trials)} trial(s) started" if trials else "not started"
