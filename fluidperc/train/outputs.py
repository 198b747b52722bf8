"""Where a trained cell's outputs live and how to tell it is done, without importing torch (the planner asks)."""

from __future__ import annotations

import json
from pathlib import Path

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
