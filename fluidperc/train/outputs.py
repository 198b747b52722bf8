"""Where a trained cell's outputs live and how to tell it is done, without importing torch (the planner asks)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

RESULT = "result.json"
MODEL = "model.pt"


def trained_steps(out_dir: Path) -> int | None:
    """The steps a finished cell trained (its result.json), or None when it has not finished."""
    path = Path(out_dir) / RESULT
    if not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text())["steps"])
    except (ValueError, KeyError, TypeError):
        return None  # a result.json from no trainer of ours: train again rather than trust it


def is_done(out_dir: Path, steps: int | None = None) -> bool:
    """Finished, and (when ``steps`` is given) trained at least that long: a relaunch with more steps continues
    the cell from its last checkpoint instead of counting it done."""
    done = trained_steps(out_dir)
    return done is not None and (steps is None or done >= steps)


def is_current(result: Path, *train_dirs: Path) -> bool:
    """An evaluation output that exists and is newer than every model it evaluated (a cell trained longer after
    it was evaluated is evaluated again)."""
    result = Path(result)
    if not result.exists():
        return False
    made = result.stat().st_mtime
    return all((Path(d) / MODEL).is_file() and (Path(d) / MODEL).stat().st_mtime <= made for d in train_dirs)


PIECES = "pieces.jsonl"  # one line per job that trained the cell: its compute record (fluidperc.analysis.compute)
OPEN_PIECE = "piece.open.json"  # the job training the cell now, as of its last checkpoint: what a killed job leaves
LEGACY_PIECES = "pieces.txt"  # the same, as the CPU study once read it from job logs (kept in its bundle)
_LEGACY = re.compile(r"^(?P<ended>\S+) host=(?P<host>\S+) code=(?P<code>\S+) steps=(?P<start>\d+)-(?P<to>\d+) "
                     r"elapsed=(?P<elapsed>[\d:]+) log=(?P<log>\S+)$")


def _minutes(elapsed: str) -> float:
    """tqdm's elapsed time (MM:SS or H:MM:SS) in minutes."""
    seconds = 0
    for part in elapsed.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds / 60


def parse_legacy_piece(line: str, where: str) -> dict[str, Any]:
    m = _LEGACY.match(line.strip())
    if not m:
        raise ValueError(f"{where}: {line!r} is not a pieces.txt record; expected '<end UTC> host=H code=C "
                         "steps=FROM-TO elapsed=MM:SS log=NAME'")
    return {"start": int(m["start"]), "to": int(m["to"]), "seconds": round(_minutes(m["elapsed"]) * 60, 1),
            "host": m["host"], "code": m["code"], "ended": m["ended"], "log": m["log"]}


def read_pieces(out_dir: Path) -> list[dict[str, Any]]:
    """Every job that trained the cell in ``out_dir``, oldest first: ``start`` and ``to`` (steps), ``seconds`` of
    wall time, ``host``, ``code`` (the commit it ran), ``ended`` (UTC)."""
    out_dir = Path(out_dir)
    pieces = []
    legacy = out_dir / LEGACY_PIECES
    if legacy.is_file():
        pieces += [parse_legacy_piece(line, f"{legacy}, line {i}")
                   for i, line in enumerate(legacy.read_text().splitlines(), 1) if line.strip()]
    path = out_dir / PIECES
    if path.is_file():
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    pieces.append(json.loads(line))
                except ValueError:
                    raise ValueError(f"{path}, line {i}: not a JSON record") from None
    open_piece = _read_open_piece(out_dir)
    if open_piece is not None:  # a job still training the cell, or one killed since its last checkpoint
        pieces.append(open_piece)
    return sorted(pieces, key=lambda p: (p["ended"], p["start"]))


def _read_open_piece(out_dir: Path) -> dict[str, Any] | None:
    try:
        return {**json.loads((out_dir / OPEN_PIECE).read_text()), "open": True}
    except (OSError, ValueError):  # none, or (never, being replaced atomically) unreadable
        return None


def write_open_piece(out_dir: Path, piece: dict[str, Any]) -> None:
    """The record of the job training the cell, up to the checkpoint it has just written, replaced atomically at
    each checkpoint: a job killed outright (SIGKILL, a lost node or machine) leaves the compute its cell kept."""
    tmp = Path(out_dir) / (OPEN_PIECE + ".tmp")
    tmp.write_text(json.dumps(piece))
    os.replace(tmp, Path(out_dir) / OPEN_PIECE)


def settle_open_piece(out_dir: Path) -> None:
    """Called by the next job to train the cell, under its lock: a record left open belongs to a job that died
    after its last checkpoint. It joins pieces.jsonl, marked ``killed`` (the time after that checkpoint is lost)."""
    piece = _read_open_piece(Path(out_dir))
    if piece is not None:
        piece.pop("open")
        same_job = [p for p in read_pieces(out_dir) if not p.get("open")
                    and (p.get("started"), p["start"], p["host"]) == (piece.get("started"), piece["start"], piece["host"])]
        if not same_job:  # else its job recorded itself and died before it could remove the open record
            append_piece(out_dir, {**piece, "killed": True})
    (Path(out_dir) / OPEN_PIECE).unlink(missing_ok=True)


def piece_seconds(piece: dict[str, Any]) -> float:
    """A job's wall time charged to the cell: its share when the job trained several cells at once (each step's
    time over the cells it trained, ``cost_seconds``), else the job's wall time."""
    return float(piece.get("cost_seconds", piece["seconds"]))


def append_piece(out_dir: Path, piece: dict[str, Any]) -> None:
    """One job's record, appended as one line (a line is written whole or, if the job dies mid-write, torn and
    reported by :func:`read_pieces`)."""
    with open(Path(out_dir) / PIECES, "a") as fh:
        fh.write(json.dumps(piece) + "\n")
