"""RUN_DIR/manifest.json: every launch and what it submitted, so that status and relaunch know the jobs."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fluidperc.atomic import write_text
from hpc.errors import UserError

MANIFEST = "manifest.json"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    if not path.is_file():
        return {"launches": []}
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or not isinstance(manifest.get("launches"), list):
            raise ValueError("expected an object with a list 'launches'")
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a manifest this toolkit wrote ({err}); it is only ever replaced whole, so "
                        "something else changed it. Move it away to start the run's record afresh.") from None
    return manifest


def write(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Atomic replace: an interrupted launcher never leaves half a manifest behind."""
    write_text(run_dir / MANIFEST, json.dumps(manifest, indent=1))


def latest_jobs(manifest: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(group, task label) -> the most recent submission of that task, with its backend."""
    jobs: dict[tuple[str, str], dict[str, Any]] = {}
    for launch in manifest.get("launches", []):
        for group in launch["groups"]:
            for task in group["tasks"]:
                jobs[(group["name"], task["label"])] = {**task, "backend": launch["backend"], "stage": group["stage"]}
    return jobs
