"""What each cell's training cost, from the compute record of every job that trained it (``pieces.jsonl``, kept in
a bundle): a study run in pieces on several machines has no other record of its time once the machines are gone.
One row per task, grid and loss: its cells, the median and the total job-minutes over them (a job that trained
several cells at once is charged to each by its share, fluidperc.train.outputs.piece_seconds)."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from fluidperc.analysis.bundle import compute_record
from fluidperc.analysis.tables import markdown_table
from fluidperc.train.outputs import piece_seconds

CELL = re.compile(r"^(?P<task>[^-]+)-(?P<grid>[^-]+)-(?P<loss>.+)-s(?P<seed>\d+)$")
HEADERS = ["task", "grid", "loss", "cells", "median job-minutes per cell", "job-minutes"]


def covers(pieces: list[dict], steps: int, slack: int = 10) -> bool:
    """Whether the jobs' step ranges reach from 0 to ``steps`` without a gap. A record read from a stopped job's
    progress bar ends a few steps short of the checkpoint the next job resumed from: ``slack`` allows it."""
    reached = 0
    for piece in sorted(pieces, key=lambda p: p["start"]):
        if piece["start"] > reached + slack:
            return False
        reached = max(reached, piece["to"])
    return reached >= steps


def summarise(path: str | Path, prefix: str = "", steps: int | None = None) -> tuple[list[list[str]], list[str]]:
    """Rows (task, grid, loss, cells, median and total job-minutes) and the cells whose record is incomplete."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    incomplete = []
    for label, cell in sorted(compute_record(path).items()):
        m = CELL.match(label)
        if not m or not label.startswith(prefix):
            continue
        pieces = cell["pieces"]
        if not pieces:
            incomplete.append(f"{label} (no compute record)")
            continue
        target = steps if steps is not None else max(p["to"] for p in pieces)
        if not covers(pieces, target) or not cell["finished"]:
            ranges = ", ".join(f"{p['start']}-{p['to']}" for p in sorted(pieces, key=lambda p: p["start"]))
            incomplete.append(f"{label} (record covers steps {ranges} of 0-{target}"
                              f"{'' if cell['finished'] else ', not finished'})")
            continue
        groups.setdefault((m["task"], m["grid"], m["loss"]), []).append(sum(piece_seconds(p) for p in pieces) / 60)
    rows = [[task, grid, loss, str(len(mins)), f"{statistics.median(mins):.1f}", f"{sum(mins):.1f}"]
            for (task, grid, loss), mins in sorted(groups.items())]
    return rows, incomplete


def compute_text(path: str | Path, prefix: str = "", steps: int | None = None) -> str:
    rows, incomplete = summarise(path, prefix, steps)
    total = sum(float(row[5]) for row in rows)
    text = (markdown_table(HEADERS, rows) + f"\n\n{sum(int(row[3]) for row in rows)} cell(s) with a complete record, "
            f"{total:.1f} job-minutes in all.")
    if incomplete:
        text += f"\nLeft out, their record being incomplete: {', '.join(incomplete)}."
    return text
