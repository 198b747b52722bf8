"""python -m hpc.status RUN_DIR: a table of a run's stages and jobs, with their Slurm (or local) states."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from hpc import manifest as mf
from hpc.backends import sacct_states
from hpc.errors import UserError, run_cli
from hpc.plan import format_table
from hpc.spec import load_sweep
from hpc.stages import progress


def job_states(run_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(group, task) -> latest job with its current state (sacct for Slurm jobs, the manifest otherwise)."""
    manifest = mf.read(run_dir)
    if not manifest["launches"]:
        raise UserError(f"{run_dir}: no {mf.MANIFEST} here; launch a sweep into it with python -m hpc.launch first")
    jobs = mf.latest_jobs(manifest)
    slurm_ids = [j["job_id"] for j in jobs.values() if j["backend"] == "slurm"]
    live = sacct_states(slurm_ids) if slurm_ids else {}
    for job in jobs.values():
        if job["backend"] == "slurm":
            info = live.get(job["job_id"], {"state": "UNKNOWN", "elapsed": "", "exit": ""})
            job.update(info)
    return jobs


def render(run_dir: Path, verbose: bool = False) -> str:
    jobs = job_states(run_dir)
    by_group: dict[str, Counter[str]] = {}
    stage_of: dict[str, str] = {}
    for (group, _), job in jobs.items():
        by_group.setdefault(group, Counter())[job["state"]] += 1
        stage_of[group] = job["stage"]
    stage_progress: dict[str, str] = {}
    sweep_file = run_dir / "sweep.yaml"
    if sweep_file.is_file():
        stage_progress = progress(load_sweep(sweep_file), run_dir)
    rows, shown = [], set()
    for g, c in by_group.items():
        stage = stage_of[g]
        progress_text = "" if stage in shown else stage_progress.get(stage, "")  # once per stage, on its first row
        shown.add(stage)
        rows.append([stage, g, ", ".join(f"{s} {n}" for s, n in sorted(c.items())), progress_text])
    out = [format_table(["stage", "group", "jobs by state", "progress"], rows)]
    if verbose or len(jobs) <= 40:
        detail = [
            [g, label, j["job_id"], j["state"], j.get("elapsed", ""), j.get("exit", "")]
            for (g, label), j in jobs.items()
        ]
        out += ["", format_table(["group", "task", "job", "state", "elapsed", "exit"], detail)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m hpc.status", description="Show a run's stages and jobs with their Slurm or local states."
    )
    p.add_argument("run_dir", help="the run directory a launch wrote (default runs/<sweep name>)")
    p.add_argument("-v", "--verbose", action="store_true", help="list every job, even in large runs")
    args = p.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    print(render(run_dir, args.verbose))
    return 0


if __name__ == "__main__":
    run_cli(main, "hpc.status")
