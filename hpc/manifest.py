"""RUN_DIR/manifest.json: every launch and what it submitted, so that status and relaunch know the jobs."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    if not path.is_file():
        return {"launches": []}
    return json.loads(path.read_text())


def write(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Atomic replace: an interrupted launcher never leaves half a manifest behind."""
    path = run_dir / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(path)


def latest_jobs(manifest: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(group, task label) -> the most recent submission of that task, with its backend."""
    jobs: dict[tuple[str, str], dict[str, Any]] = {}
    for launch in manifest.get("launches", []):
        for group in launch["groups"]:
            for task in group["tasks"]:
                jobs[(group["name"], task["label"])] = {**task, "backend": launch["backend"], "stage": group["stage"]}
    return jobs
