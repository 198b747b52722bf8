"""What produced a file: the commit of the code that ran (stores' attributes, each training job's record)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_commit() -> str:
    """HEAD of the checkout fluidperc runs from, "+uncommitted" when fluidperc/ or hpc/ differ from it; "unknown"
    outside a git checkout (an installed wheel)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=here).stdout.strip()
        if not head:
            return "unknown"
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", str(here), str(here.parent / "hpc")],
                               capture_output=True, timeout=10, cwd=here).returncode
        return head + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
