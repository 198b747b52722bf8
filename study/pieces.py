"""What each cell's training cost, from the pieces.txt lines that `study/sync.sh save` keeps: a study run in pieces
on several machines has no other record of its time once the machines are gone. Prints one row per task, grid and
loss (median and total job-minutes over its seeds), and names the cells whose record does not cover every step.

    python study/pieces.py [STUDY_DIR] [--prefix sr-]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

LINE = re.compile(r"^(?P<end>\S+) host=(?P<host>\S+) code=(?P<code>\S+) steps=(?P<start>\d+)-(?P<to>\d+) "
                  r"elapsed=(?P<elapsed>[\d:]+) log=(?P<log>\S+)$")
CELL = re.compile(r"^(?P<task>[^-]+)-(?P<grid>[^-]+)-(?P<loss>.+)-s(?P<seed>\d+)$")


def minutes(elapsed: str) -> float:
    """tqdm's elapsed time (MM:SS or H:MM:SS) in minutes."""
    seconds = 0
    for part in elapsed.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds / 60


def read_pieces(path: Path) -> list[dict]:
    """The jobs of one cell; a line in another format is an error that names the file and the line."""
    jobs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        m = LINE.match(line.strip())
        if not m:
            raise ValueError(f"{path}, line {number}: {line!r} is not a pieces.txt record; expected "
                             "'<end UTC> host=H code=C steps=FROM-TO elapsed=MM:SS log=NAME' (study/sync.sh save)")
        jobs.append({**m.groupdict(), "start": int(m["start"]), "to": int(m["to"]),
                     "minutes": minutes(m["elapsed"])})
    return jobs


def covers(jobs: list[dict], steps: int, slack: int = 10) -> bool:
    """Whether the jobs' step ranges reach from 0 to ``steps`` without a gap. A stopped job's record ends at its
    last progress-bar redraw, a few steps short of the checkpoint the next job resumed from: ``slack`` allows it."""
    reached = 0
    for job in sorted(jobs, key=lambda j: j["start"]):
        if job["start"] > reached + slack:
            return False
        reached = max(reached, job["to"])
    return reached >= steps


def summarise(train: Path, prefix: str = "", steps: int | None = None) -> tuple[list[list[str]], list[str]]:
    """Rows (task, grid, loss, cells, median and total job-minutes) and the cells whose record is incomplete."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    incomplete = []
    for cell in sorted(p for p in train.iterdir() if p.is_dir() and p.name.startswith(prefix)):
        m = CELL.match(cell.name)
        pieces = cell / "pieces.txt"
        if not m or not pieces.is_file():
            if m and ((cell / "checkpoint.pt").is_file() or (cell / "model.pt").is_file()):
                incomplete.append(f"{cell.name} (no pieces.txt)")
            continue
        jobs = read_pieces(pieces)
        target = steps if steps is not None else max(job["to"] for job in jobs)
        if not covers(jobs, target) or not (cell / "result.json").is_file():
            ranges = ", ".join(f"{job['start']}-{job['to']}" for job in sorted(jobs, key=lambda j: j["start"]))
            incomplete.append(f"{cell.name} (record covers steps {ranges} of 0-{target}"
                              f"{'' if (cell / 'result.json').is_file() else ', not finished'})")
            continue
        groups.setdefault((m["task"], m["grid"], m["loss"]), []).append(sum(job["minutes"] for job in jobs))
    rows = [[task, grid, loss, str(len(mins)), f"{statistics.median(mins):.1f}", f"{sum(mins):.1f}"]
            for (task, grid, loss), mins in sorted(groups.items())]
    return rows, incomplete


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", default="study/study_cpu", type=Path,
                        help="the study folder that holds train/ (default: study/study_cpu)")
    parser.add_argument("--prefix", default="", help="only cells whose name starts with this, e.g. sr-")
    parser.add_argument("--steps", type=int, help="the steps a complete record must reach (default: the most "
                        "any of the cell's jobs reached)")
    args = parser.parse_args(argv)
    train = args.study / "train"
    if not train.is_dir():
        print(f"study/pieces.py: {train} does not exist; expected the train/ folder of a study folder "
              "(study/sync.sh save writes it)", file=sys.stderr)
        return 2
    try:
        rows, incomplete = summarise(train, args.prefix, args.steps)
    except ValueError as err:
        print(f"study/pieces.py: {err}", file=sys.stderr)
        return 2
    from fluidperc.analysis.tables import markdown_table

    print(markdown_table(["task", "grid", "loss", "cells", "median job-minutes per cell", "job-minutes"], rows))
    total = sum(float(row[5]) for row in rows)
    print(f"\n{sum(int(row[3]) for row in rows)} cell(s) with a complete record, {total:.1f} job-minutes in all.")
    if incomplete:
        print(f"Left out, their record being incomplete: {', '.join(incomplete)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
