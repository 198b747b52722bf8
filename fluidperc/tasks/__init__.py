"""The table of tasks: what a sweep may name under ``train.tasks`` and ``tune.task``, and what the layers around
a task (planner, trainer, evaluation, report) need to know about it without importing torch.

A task is one file with a :class:`fluidperc.tasks.base.Task` subclass (its data, model, objective, validation
and evaluation) plus one :func:`register_task` call naming it as ``"module:Class"``; the class is imported only
when a cell is built. The study's three tasks: ``ae.py``, ``sr.py``, ``sol.py``. Code outside fluidperc
registers the same way, from a module named under a sweep's ``plugins:`` or an entry point in the group
``fluidperc.tasks`` (docs/extending.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from fluidperc.errors import UserError

ENTRY_POINT_GROUP = "fluidperc.tasks"


@dataclass(frozen=True)
class TaskEntry:
    """``implementation``: ``"module:Class"`` of the task (a fluidperc.tasks.base.Task). ``high_resolution``:
    the cells need a target grid (a dataset's ``high_resolution``). ``rollout``: the task steps a solver, so it
    uses ``unroll``/``val_rollout`` and is evaluated over rollout steps (error-vs-step figure). ``baselines``:
    pseudo-losses the evaluation stores beside the cell's own results, as ``(name, variable suffix)``."""

    name: str
    implementation: str
    description: str = ""
    high_resolution: bool = False
    rollout: bool = False
    baselines: tuple[tuple[str, str], ...] = ()

    def load(self) -> Any:
        module, _, attr = self.implementation.partition(":")
        return getattr(importlib.import_module(module), attr)()


_TASKS: dict[str, TaskEntry] = {}
_ENTRY_POINTS_LOADED = False


def register_task(entry: TaskEntry) -> TaskEntry:
    """Add a task to the table (a second registration of the same name must be the same entry)."""
    if entry.name != "ae":
        _builtin()
    known = _TASKS.get(entry.name)
    if known is not None and known != entry:
        raise UserError(f"task '{entry.name}' is registered twice ({known.implementation}, {entry.implementation}); "
                        "rename one")
    _TASKS[entry.name] = entry
    return entry


def _builtin() -> None:
    if "ae" in _TASKS:
        return
    register_task(TaskEntry("ae", "fluidperc.tasks.ae:Autoencoder", "autoencoder: a frame through a bottleneck"))
    register_task(TaskEntry("sr", "fluidperc.tasks.sr:SuperResolution", "super-resolution (Johnson et al.): a low-res "
                            "frame to the high-res one", high_resolution=True))
    register_task(TaskEntry("sol", "fluidperc.tasks.sol:SolverInTheLoopTask", "Solver-in-the-Loop: a correction "
                            "network trained through m steps of the low-res solver", rollout=True,
                            baselines=(("source", "_source"),)))


def tasks() -> dict[str, TaskEntry]:
    """Every registered task: the study's, installed plugins' (entry point group fluidperc.tasks) and those of
    imported plugin modules."""
    global _ENTRY_POINTS_LOADED
    _builtin()
    if not _ENTRY_POINTS_LOADED:
        _ENTRY_POINTS_LOADED = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()
    return _TASKS


def task_entry(name: str) -> TaskEntry:
    table = tasks()
    if name not in table:
        raise UserError(f"unknown task '{name}'; expected one of {', '.join(table)}")
    return table[name]


def check_task(name: str) -> str:
    """A pydantic validator's body: the name, or a ValueError listing the registered tasks."""
    try:
        task_entry(name)
    except UserError as err:
        raise ValueError(str(err)) from None
    return name


_LOADED: dict[str, Any] = {}


def get_task(name: str) -> Any:
    """The task's implementation (one instance per process)."""
    if name not in _LOADED:
        _LOADED[name] = task_entry(name).load()
    return _LOADED[name]
