"""The plan a sweep expands to: job groups (one Slurm array each) of same-shaped tasks, with afterok edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from hpc.errors import UserError
from hpc.spec import Resources


@dataclass
class Task:
    """One array element: a call ``fn(*args)`` of its group's function. ``done`` tasks are not resubmitted."""

    label: str
    args: tuple[Any, ...]
    done: bool = False


@dataclass
class JobGroup:
    """Same-shaped tasks submitted as ONE array (or one job when there is a single task)."""

    name: str
    stage: str
    fn: Callable[..., Any]
    tasks: list[Task]
    resources: Resources
    after: list[str] = field(default_factory=list)
    note: str = ""
    prepare: Callable[[], None] | None = None  # run by the launcher before submitting (e.g. create the stores)

    @property
    def pending(self) -> list[Task]:
        return [t for t in self.tasks if not t.done]


def check_plan(groups: list[JobGroup]) -> None:
    """Names unique, every dependency planned earlier (so submission order is a topological order)."""
    seen: set[str] = set()
    for group in groups:
        if group.name in seen:
            raise UserError(f"the plan has two job groups named '{group.name}'")
        missing = [a for a in group.after if a not in seen]
        if missing:
            raise UserError(f"job group '{group.name}' waits for {missing}, which the plan does not submit before it")
        labels = [t.label for t in group.tasks]
        if len(set(labels)) != len(labels):
            raise UserError(f"job group '{group.name}' has duplicate task labels")
        seen.add(group.name)


def describe_resources(res: Resources) -> str:
    parts = [f"{res.nodes}x{res.tasks_per_node} proc", f"{res.cpus_per_task} cpu"]
    if res.gpus_per_node:
        parts.append(f"{res.gpus_per_node} gpu/node")
    if res.mem_gb:
        parts.append(f"{res.mem_gb:g} GB")
    parts.append(f"{res.time_min} min")
    if res.partition:
        parts.append(f"partition={res.partition}")
    if res.account:
        parts.append(f"account={res.account}")
    if res.qos:
        parts.append(f"qos={res.qos}")
    return ", ".join(parts)


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)] if rows else [len(h) for h in headers]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(out)


def format_plan(groups: list[JobGroup]) -> str:
    rows = []
    for g in groups:
        n, todo = len(g.tasks), len(g.pending)
        kind = "array" if todo > 1 else ("job" if todo == 1 else "-")
        rows.append(
            [g.stage, g.name, kind, f"{todo}/{n}", describe_resources(g.resources), ",".join(g.after) or "-", g.note]
        )
    total = sum(len(g.pending) for g in groups)
    arrays = sum(1 for g in groups if g.pending)
    table = format_table(["stage", "group", "kind", "to run", "resources per job", "after (afterok)", "note"], rows)
    return f"{table}\n{total} task(s) in {arrays} submission(s)."
