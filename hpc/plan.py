"""The plan a sweep expands to: job groups (one Slurm array each) of same-shaped tasks, with afterok edges."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fluidperc.registry import resolve
from hpc.errors import UserError
from hpc.spec import Resources


def default_run_dir(sweep_name: str) -> Path:
    """Where a launch writes when no --out is given (hpc.launch and python -m hpc.tune agree on it)."""
    return Path("runs") / sweep_name


@dataclass
class Task:
    """One array element: a call ``fn(*args)`` of its group's function. ``done`` tasks are not resubmitted."""

    label: str
    args: tuple[Any, ...]
    done: bool = False
    # the path whose existence means the task is done (hpc.status counts them); a packed job has one per cell
    output: str | tuple[str, ...] | None = None
    cells: list["Cell"] = field(default_factory=list)  # the cells a packed training job trains (the dry run shows)

    @property
    def outputs(self) -> list[str]:
        if self.output is None:
            return []
        return [self.output] if isinstance(self.output, str) else list(self.output)


@dataclass
class Cell:
    """One task x dataset x loss x seed cell that a group trains or evaluates, or leaves out with the reason."""

    label: str
    task: str
    dataset: str
    loss: str
    seed: int
    skipped: str = ""  # the reason, when the cell is left out


@dataclass
class JobGroup:
    """Same-shaped tasks submitted as ONE array (or one job when there is a single task)."""

    name: str
    stage: str
    fn: Callable[..., Any] | str  # or "module:attr" (a function, or a job class to instantiate): see target()
    tasks: list[Task]
    resources: Resources
    after: list[str] = field(default_factory=list)
    note: str = ""
    prepare: Callable[[], None] | None = None  # run by the launcher before submitting (e.g. create the stores)
    cells: list[Cell] = field(default_factory=list)  # what a train/evaluate group holds, skipped cells included
    progress: dict[str, Any] = field(default_factory=dict)  # how hpc.status counts progress (recorded at launch)

    def record(self) -> dict[str, Any]:
        """What the launch decided for this group, for the manifest: hpc.status reads this, never the
        environment it runs in."""
        progress = dict(self.progress)
        outputs = [o for t in self.tasks for o in t.outputs]
        if outputs and "outputs" not in progress:
            progress["outputs"] = outputs
            # outputs this launch writes again (a cell trained longer, its evaluation): done once they change
            progress["stale"] = {o: Path(o).stat().st_mtime for t in self.pending for o in t.outputs
                                 if Path(o).exists()}
        return {"name": self.name, "stage": self.stage, "tasks": len(self.tasks), "pending": len(self.pending),
                "progress": progress,
                "skipped": [{"label": c.label, "reason": c.skipped} for c in self.cells if c.skipped]}

    def target(self) -> Callable[..., Any]:
        """What each task calls. A planner names it as ``"module:attr"`` so that planning (``--dry-run``,
        ``hpc.status``) imports neither submitit nor the science; it is imported when the group is submitted."""
        if not isinstance(self.fn, str):
            return self.fn
        obj = resolve(self.fn)
        return obj() if isinstance(obj, type) else obj

    @property
    def pending(self) -> list[Task]:
        return [t for t in self.tasks if not t.done]


def batch_label(labels: list[str]) -> str:
    """The label of a task that does the work of several cells: the first one's, with the count and a digest of
    them all (a relaunch that batches the same cells finds the same task)."""
    if len(labels) == 1:
        return labels[0]
    digest = hashlib.sha256("\n".join(labels).encode()).hexdigest()[:8]
    return f"{labels[0]}+{len(labels) - 1}-{digest}"


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """``items`` in runs of at most ``size``, as even as they can be (7 at 4: 4 + 3, not 4 + 2 + 1)."""
    if not items:
        return []
    n = -(-len(items) // size)
    per = -(-len(items) // n)
    return [items[i:i + per] for i in range(0, len(items), per)]


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


def _seed_list(seeds: list[int]) -> str:
    return " ".join(str(s) for s in sorted(seeds)) or "-"


def format_cells(group: JobGroup) -> str:
    """The group's cells as one row per task x dataset x loss with its seeds, marking done and skipped ones."""
    done = {t.label for t in group.tasks if t.done}
    rows: dict[tuple[str, str, str], dict[str, list[int]]] = {}
    reasons: dict[tuple[str, str, str], str] = {}
    for c in group.cells:
        key = (c.task, c.dataset, c.loss)
        state = "skipped" if c.skipped else ("done" if c.label in done else "to run")
        rows.setdefault(key, {}).setdefault(state, []).append(c.seed)
        if c.skipped:
            reasons[key] = c.skipped.removeprefix("skipped: ")
    table = []
    for key, states in rows.items():
        parts = [f"{state} {_seed_list(seeds)}" for state, seeds in states.items() if state != "skipped"]
        if "skipped" in states:
            parts.append(f"skipped {_seed_list(states['skipped'])}: {reasons[key]}")
        all_seeds = [s for seeds in states.values() for s in seeds]
        table.append([*key, _seed_list(all_seeds), "; ".join(parts)])
    n_skip = sum(1 for c in group.cells if c.skipped)
    head = f"{group.name}: {len(group.cells)} cell(s)" + (f", {n_skip} skipped" if n_skip else "")
    body = format_table(["task", "dataset", "loss", "seeds", "state (by seed)"], table)
    return head + "\n" + "\n".join("  " + line for line in body.splitlines()) + format_packs(group)


def format_packs(group: JobGroup, width: int = 120) -> str:
    """Which cells share a job, for a group that packs them (train.cells_per_task): per job, its task and
    dataset, then each loss row with its seeds."""
    packed = [t for t in group.pending if len(t.cells) > 1]
    if not packed:
        return ""
    lines = [f"  jobs that train several cells as one computation ({len(packed)}):"]
    for i, task in enumerate(packed, 1):
        rows: dict[str, list[int]] = {}
        for c in task.cells:
            rows.setdefault(c.loss, []).append(c.seed)
        first = task.cells[0]
        parts = [f"{loss} (seeds {_seed_list(seeds)})" for loss, seeds in rows.items()]
        line = f"    {i}: {first.task} {first.dataset}, {len(task.cells)} cells: "
        for j, piece in enumerate(parts):
            piece += "; " if j < len(parts) - 1 else ""
            if len(line) + len(piece) > width and not line.endswith(": "):
                lines.append(line.rstrip())
                line = " " * 7
            line += piece
        lines.append(line)
    return "\n" + "\n".join(lines)


def format_plan(groups: list[JobGroup], cells: bool = False) -> str:
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
    out = f"{table}\n{total} task(s) in {arrays} submission(s)."
    if cells:
        out += "".join("\n\n" + format_cells(g) for g in groups if g.cells)
    return out
