"""The Tune driver: build (or restore) the experiment under RUN_DIR/tune/, run it on the connected Ray, then
write the tidy RUN_DIR/tune.zarr and the report. A relaunch restores the experiment: finished trials stay
finished, unfinished and failed ones continue from their last checkpoint."""

from __future__ import annotations

from pathlib import Path

from fluidperc.tasks.cell import CellConfig
from hpc.space import to_ray
from hpc.spec import TuneStage
from hpc.stages.tune import EXPERIMENT, experiment_dir
from hpc.tune.trial import train_trial, trial_dirname


def run_tuner(stage: TuneStage, run_dir: Path, cell: CellConfig) -> Path:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from hpc.tune.results import write_results  # xarray: when the experiment ends

    res = stage.trial_resources
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, base_cell=cell.model_dump_json(), threads=max(1, int(res.cpus))),
        {"cpu": res.cpus, "gpu": res.gpus})
    path = experiment_dir(run_dir)
    if tune.Tuner.can_restore(str(path)):
        print(f"restoring the Tune experiment in {path}: unfinished and failed trials continue from their checkpoints")
        tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True)
    else:
        asha = ASHAScheduler(time_attr="training_iteration", max_t=stage.epochs, grace_period=stage.asha.grace_period,
                             reduction_factor=stage.asha.reduction_factor, brackets=stage.asha.brackets)
        tuner = tune.Tuner(
            trainable,
            param_space={key: to_ray(value) for key, value in stage.space.items()},
            tune_config=tune.TuneConfig(metric=stage.metric, mode="min", scheduler=asha, num_samples=stage.num_samples,
                                        max_concurrent_trials=stage.max_concurrent,
                                        search_alg=BasicVariantGenerator(random_state=stage.seed),
                                        trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(path.parent),
                                      failure_config=tune.FailureConfig(max_failures=stage.max_failures),
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=1),
        )
    grid = tuner.fit()
    return write_results(grid, stage, cell, Path(run_dir))
