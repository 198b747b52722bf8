"""The table of tasks: what a sweep may name under ``train.tasks`` and ``tune.task``, and what the layers around
a task (planner, trainer, evaluation, report) need to know about it without importing torch.

A task is one file with a :class:`fluidperc.tasks.base.Task` subclass (its data, model, objective, validation
and evaluation) plus one :func:`register_task` call naming it as ``"module:Class"``; the class is imported only
when a cell is built. The study's three tasks: ``ae.py``, ``sr.py``, ``sol.py``. Code outside fluidperc
registers the same way, from a module named under a sweep's ``plugins:`` or an entry point in the group
``fluidperc.tasks`` (docs/extending.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluidperc.registry import Registry, resolve

ENTRY_POINT_GROUP = "fluidperc.tasks"


@dataclass(frozen=True)
class Display:
    """How the report and the cost figures show a task's or a pipeline's results. ``what``: what its errors
    compare (figure axes). ``note``: the report's paragraph above its table. ``timed``: its table gives each
    path's wall time per frame. ``cost_paths``: the source path's name and the learned paths' ("{}": the loss).
    ``cost_what``: the cost figure's error axis. ``brought``: how the ladder's rungs meet the reference grid.
    ``cost_figure``: the cost figure's file name."""

    what: str = "vs reference"
    note: str = ""
    timed: bool = False
    cost_paths: tuple[str, str] = ("source", "{}")
    cost_what: str = ""
    brought: str = "its velocity resampled onto the low grid the reference lives on"
    cost_figure: str = "accuracy_vs_cost_{task}_{resolution}.png"


@dataclass(frozen=True)
class TaskEntry:
    """``implementation``: ``"module:Class"`` of the task (a fluidperc.tasks.base.Task). ``high_resolution``:
    the cells need a target grid (a dataset's ``high_resolution``). ``rollout``: the task steps a solver, so it
    uses ``unroll``/``val_rollout`` and is evaluated over rollout steps (error-vs-step figure). ``display``: how
    the report and the cost figures show it (fluidperc.evaluation.pipelines shows pipelines alike). ``baselines``:
    pseudo-losses the evaluation stores beside the cell's own results, as ``(name, variable suffix)``.
    ``packs``: the task has ``build_net``, so cells that differ only in seed, loss and learning rate may train
    in one job (``train.cells_per_task``)."""

    name: str
    implementation: str
    description: str = ""
    high_resolution: bool = False
    rollout: bool = False
    baselines: tuple[tuple[str, str], ...] = ()
    packs: bool = False
    display: Display = Display()

    def load(self) -> Any:
        return resolve(self.implementation)()


def _builtin() -> None:
    register_task(TaskEntry("ae", "fluidperc.tasks.ae:Autoencoder", "autoencoder: a frame through a bottleneck",
                            packs=True))
    register_task(TaskEntry("sr", "fluidperc.tasks.sr:SuperResolution", "super-resolution (Johnson et al.): a low-res "
                            "frame to the high-res one", high_resolution=True, packs=True))
    register_task(TaskEntry("sol", "fluidperc.tasks.sol:SolverInTheLoopTask", "Solver-in-the-Loop: a correction "
                            "network trained through m steps of the low-res solver", rollout=True,
                            baselines=(("source", "_source"),), packs=True,
                            display=Display(cost_paths=("low-res sim (source)", "low-res sim + SOL ({})"),
                                            cost_what="of the velocity vs the reference, low grid")))


TASKS: Registry[TaskEntry] = Registry("task", ENTRY_POINT_GROUP, key=lambda e: e.name,
                                      describe=lambda e: e.implementation, builtin=_builtin)
register_task = TASKS.register
tasks = TASKS.table
task_entry = TASKS.entry
check_task = TASKS.check


_LOADED: dict[str, Any] = {}


def get_task(name: str) -> Any:
    """The task's implementation (one instance per process)."""
    if name not in _LOADED:
        _LOADED[name] = task_entry(name).load()
    return _LOADED[name]
