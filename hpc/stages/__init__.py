"""Stage planners: each turns its sweep section into job groups. The table's order is the order the launcher
plans (and chains) them; a stage is one module with a ``plan(sweep, run_dir, dry_run)`` and one entry here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fluidperc.registry import Registry, resolve
from hpc.plan import JobGroup, check_plan
from hpc.spec import Sweep


@dataclass(frozen=True)
class StageEntry:
    """``name``: the sweep section it plans. ``planner``: ``"module:attr"`` of its ``plan`` function."""

    name: str
    planner: str


def _builtin() -> None:
    for name in ("check", "datagen", "tune", "train", "evaluate"):
        STAGES.register(StageEntry(name, f"hpc.stages.{name}:plan"))


# Stages need a sweep section of their own (the sweep's keys are fixed), so installed packages add none.
STAGES: Registry[StageEntry] = Registry("stage", None, key=lambda e: e.name, describe=lambda e: e.planner,
                                        builtin=_builtin)


def stage_names(sweep: Sweep) -> list[str]:
    """The sweep's stages, in the order they are planned."""
    return [name for name in STAGES if getattr(sweep, name, None) is not None]


def plan_sweep(sweep: Sweep, run_dir: Path, dry_run: bool = False) -> list[JobGroup]:
    """Every stage's job groups. A dry run plans the same, but a planner may note what a real launch would refuse
    instead of stopping."""
    groups: list[JobGroup] = []
    for name in stage_names(sweep):
        groups += resolve(STAGES[name].planner)(sweep, run_dir, dry_run=dry_run)
    check_plan(groups)
    return groups
