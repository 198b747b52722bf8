"""Where a trained cell's outputs live and how to tell it is done, without importing torch (the planner asks)."""

from __future__ import annotations

from pathlib import Path

RESULT = "result.json"


def is_done(out_dir: Path) -> bool:
    return (Path(out_dir) / RESULT).is_file()
