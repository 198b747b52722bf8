"""The table of evaluation pipelines: evaluations that combine several trained cells (the combined pipeline: the
low-resolution sim with SOL's correction, upscaled by SR, against the high-resolution sim). Each appears on the
results' task axis under its name, with its baselines on the loss axis, and the report, the cost figures and
``results.zarr`` read how to show it from its entry, as they read a task's from the tasks table
(:func:`shown_as` answers for both).

A pipeline is one module with its evaluation function plus one :func:`register_pipeline` call; the sweep section
that plans its jobs (``evaluate.combined``) belongs to the cluster layer (hpc.stages.evaluate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluidperc.registry import Registry, resolve
from fluidperc.tasks import Display, tasks

ENTRY_POINT_GROUP = "fluidperc.pipelines"


@dataclass(frozen=True)
class PipelineEntry:
    """``implementation``: ``"module:function"`` of its evaluation (the job's arguments as the planner gives
    them). ``baselines``: its other paths, as ``(name on the loss axis, variable suffix)``."""

    name: str
    implementation: str
    description: str
    baselines: tuple[tuple[str, str], ...] = ()
    rollout: bool = True
    display: Display = Display()

    def load(self) -> Any:
        return resolve(self.implementation)


COMBINED_NOTE = ("The combined pipeline compares, for the marker density against the high-resolution reference, "
                 "the low-resolution sim corrected by each loss's SOL network and upscaled by the same loss's SR "
                 "network (rows named by loss), the uncorrected low-resolution sim upscaled by SR (`source`), and the "
                 "high-resolution sim itself (`high-res sim`). Wall times per frame were measured in the same job.")


def _builtin() -> None:
    register_pipeline(PipelineEntry(
        "combined", "fluidperc.evaluation.combined:evaluate_combined",
        "low-res sim + SOL + SR against the high-res sim, for the marker density",
        baselines=(("source", "_source"), ("high-res sim", "_highres")),
        display=Display(what="marker density vs the high-res reference", note=COMBINED_NOTE, timed=True,
                        cost_paths=("low-res + SR (source)", "low-res + SOL + SR ({})"),
                        cost_what="of the marker vs the high-res sim",
                        brought="its marker interpolated bilinearly onto the high-resolution grid",
                        cost_figure="accuracy_vs_cost_{resolution}.png")))


PIPELINES: Registry[PipelineEntry] = Registry("evaluation pipeline", ENTRY_POINT_GROUP, key=lambda e: e.name,
                                              describe=lambda e: e.implementation, builtin=_builtin)
register_pipeline = PIPELINES.register

@dataclass(frozen=True)
class Shown:
    """What the report needs of a name on the results' task axis: a task's or a pipeline's."""

    rollout: bool
    baselines: dict[str, str]
    display: Display
    pipeline: bool


def shown_as(name: str) -> Shown:
    """How results under ``name`` are shown (a registered task, a registered pipeline, or a task no longer
    registered: defaults)."""
    if name in PIPELINES:
        e = PIPELINES[name]
        return Shown(e.rollout, dict(e.baselines), e.display, True)
    table = tasks()
    if name in table:
        e = table[name]
        return Shown(e.rollout, dict(e.baselines), e.display, False)
    return Shown(False, {}, Display(), False)


def baselines_by_name() -> dict[str, dict[str, str]]:
    """Task or pipeline -> its baselines (name on the loss axis -> variable suffix)."""
    out = {name: dict(e.baselines) for name, e in tasks().items() if e.baselines}
    return out | {name: dict(e.baselines) for name, e in PIPELINES.items() if e.baselines}
