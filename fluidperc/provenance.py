"""What produced a file, and what it holds: the commit of the code that ran (stores' attributes, each training
job's record) and a file's sha256 (weights, checkpoints, bundles)."""

from __future__ import annotations

import hashlib
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


def sha256_of(path: Path) -> str:
    """A file's sha256, read in blocks (weight files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
