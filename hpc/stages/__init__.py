"""Stage planners: each turns its sweep section into job groups; STAGES fixes their order."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from hpc.plan import JobGroup, check_plan
from hpc.spec import Sweep
from hpc.stages import check, datagen, evaluate, train, tune

STAGES: dict[str, ModuleType] = {"check": check, "datagen": datagen, "tune": tune, "train": train, "evaluate": evaluate}


def plan_sweep(sweep: Sweep, run_dir: Path, dry_run: bool = False) -> list[JobGroup]:
    """Every stage's job groups. A dry run plans the same, but a planner may note what a real launch would refuse
    instead of stopping."""
    groups: list[JobGroup] = []
    for name in sweep.stage_names():
        groups += STAGES[name].plan(sweep, run_dir, dry_run=dry_run)
    check_plan(groups)
    return groups
