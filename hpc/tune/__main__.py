"""python -m hpc.tune SWEEP.yaml --out RUN_DIR: run a sweep's tune stage right here.

Outside Slurm it starts Ray on this machine. Inside an allocation, start it once per node with
``srun --ntasks-per-node=1`` (slurm/ray-tune.sbatch does): task 0 runs the Ray head and the Tune driver, the
other tasks join as workers. `python -m hpc.launch` submits the same thing as one job; this entry is for users who
prefer their own sbatch script.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fluidperc.tasks.cell import CellConfig
from hpc.errors import UserError, run_cli
from hpc.plan import default_run_dir, format_plan
from hpc.spec import TuneStage, load_sweep
from hpc.stages import tune as tune_stage


def _gpus_on_node() -> int:
    for var in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return len([d for d in visible.split(",") if d.strip()])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hpc.tune", description=__doc__.split("\n\n")[0] + " " +
                                __doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("sweep", help="a sweep file with a tune section, e.g. sweeps/tune_vgg_layers.yaml")
    p.add_argument("--out", help="run directory (default: runs/<sweep name>)")
    p.add_argument("--dry-run", action="store_true", help="check the sweep and print the plan; start nothing")
    args = p.parse_args(argv)
    sweep = load_sweep(args.sweep)
    if sweep.tune is None:
        raise UserError(f"{args.sweep}: the sweep has no tune section; nothing to tune. Nothing was started.")
    run_dir = Path(args.out) if args.out else default_run_dir(sweep.name)
    [group] = tune_stage.plan(sweep, run_dir)  # every check runs before Ray starts
    if args.dry_run:
        print(format_plan([group]))
        return 0
    stage_json, run_dir_s, cell_json, cpus, gpus = group.tasks[0].args
    from hpc.tune.job import run_in_allocation, run_local  # submitit, Ray: after the plan is checked

    cell = CellConfig.model_validate_json(cell_json)  # first: it imports the sweep's plugins
    stage = TuneStage.model_validate_json(stage_json)
    Path(run_dir_s).mkdir(parents=True, exist_ok=True)
    if "SLURM_PROCID" in os.environ and "SLURM_JOB_ID" in os.environ:
        nodes = int(os.environ.get("SLURM_NNODES", os.environ.get("SLURM_JOB_NUM_NODES", "1")))
        tasks = int(os.environ.get("SLURM_NTASKS", "1"))
        if tasks != nodes:
            raise UserError(f"hpc.tune runs one task per node, but this step has {tasks} tasks on {nodes} nodes; "
                            "start it with srun --ntasks-per-node=1")
        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", cpus))
        print(run_in_allocation(stage, Path(run_dir_s), cell, int(os.environ["SLURM_PROCID"]), nodes,
                                os.environ["SLURM_JOB_ID"], cpus, _gpus_on_node()))
    else:
        print(run_local(stage, Path(run_dir_s), cell, os.cpu_count() or 1, _gpus_on_node()))
    return 0


if __name__ == "__main__":
    run_cli(main, "hpc.tune")
