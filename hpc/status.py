"""python -m hpc.status RUN_DIR: a table of a run's stages and jobs, with their Slurm (or local) states."""

from __future__ import annotations

import argparse
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

from fluidperc.datasets.store import completed
from fluidperc.plugins import import_plugins
from fluidperc.train.outputs import LEGACY_PIECES, PIECES, piece_seconds, read_pieces
from hpc import manifest as mf
from hpc.backends import BACKENDS, get_backend
from hpc.errors import UserError, run_cli
from hpc.pending import cannot_start, is_held, nodes_out_of_service, pending_reasons, waits_for_nodes
from hpc.plan import format_table
from hpc.spec import read_sweep_text
from hpc.stages.tune import progress as tune_progress

WIDTH = 120  # columns hpc.status keeps to


def import_run_plugins(run_dir: Path) -> None:
    """The plugins the run's resolved sweep names (a backend they register answers for its own jobs). A plugin
    that no longer imports costs only live states: the manifest's record stands in."""
    import yaml

    path = run_dir / "sweep.yaml"
    if not path.is_file():
        return
    try:
        plugins = (yaml.safe_load(read_sweep_text(path)) or {}).get("plugins") or []
        import_plugins(tuple(plugins))
    except Exception as err:  # noqa: BLE001  (status must still print what the manifest knows)
        print(f"note: the run's plugins do not import here ({err}); states are the manifest's record")


def job_states(run_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(group, task) -> latest job with its current state (sacct for Slurm jobs, the manifest otherwise)."""
    manifest = mf.read(run_dir)
    if not manifest["launches"]:
        raise UserError(f"{run_dir}: no {mf.MANIFEST} here; launch a sweep into it with python -m hpc.launch first")
    jobs = mf.latest_jobs(manifest)
    import_run_plugins(run_dir)
    for name in sorted({j["backend"] for j in jobs.values()}):
        ids = [j["job_id"] for j in jobs.values() if j["backend"] == name]
        live = get_backend(name).states(ids) if name in BACKENDS else None
        if live is None:  # the manifest's record is the state (local, debug)
            continue
        for job in jobs.values():
            if job["backend"] == name:
                job.update(live.get(job["job_id"], {"state": "UNKNOWN", "elapsed": "", "exit": ""}))
    return jobs


def group_progress(record: dict[str, Any]) -> str:
    """One group's progress from what its launch recorded (outputs, stores, skipped cells): never from this
    process's environment, which need not be the launch's (weights, modules, GPUs)."""
    prog = record.get("progress", {})
    unit = prog.get("unit", "")
    text = ""
    if "outputs" in prog:
        stale = prog.get("stale", {})
        done = sum(Path(p).exists() and (p not in stale or Path(p).stat().st_mtime != stale[p])
                   for p in prog["outputs"])
        text = f"{done}/{len(prog['outputs'])} {unit}".rstrip()
    elif unit == "sims":
        flags = [completed(Path(p)) for p in prog["stores"]]
        n = prog["sims"]
        done = int((flags[0] & flags[1]).sum()) if all(f.size == n for f in flags) else 0
        text = f"{Path(prog['stores'][0]).stem}: {done}/{n} sims"
    elif unit == "tune":
        text = tune_progress(Path(prog["run_dir"]))
    skipped = record.get("skipped", [])
    if skipped:
        text += ("; " if text else "") + f"{len(skipped)} skipped"
    return text


def skipped_lines(plan: dict[str, dict[str, Any]]) -> list[str]:
    """Why cells were left out, grouped by group and reason under the table (a reason is a sentence with a
    command; in the progress column it would make the table too wide to read)."""
    lines = []
    for name, record in plan.items():
        reasons = Counter(s["reason"].removeprefix("skipped: ") for s in record.get("skipped", []))
        for reason, n in reasons.items():
            lines += textwrap.wrap(f"{name}: {n} cell{'s' if n > 1 else ''}: {reason}", WIDTH, initial_indent="  ",
                                   subsequent_indent="    ", break_on_hyphens=False, break_long_words=False)
    return ["skipped cells, as the launch decided:", *lines] if lines else []


def compute_lines(plan: dict[str, dict[str, Any]]) -> list[str]:
    """What training has cost so far, per group: the jobs each cell's trainer recorded (pieces.jsonl), their
    job-minutes; the record a bundle keeps (python -m fluidperc.analysis compute breaks it down)."""
    lines = []
    for name, record in plan.items():
        outputs = record.get("progress", {}).get("outputs", [])
        if record.get("stage") != "train" or not outputs:
            continue
        cells = [Path(o).parent for o in outputs]
        try:
            pieces = [p for cell in cells for p in read_pieces(cell)]
        except ValueError as err:
            lines.append(f"  {name}: the compute record cannot be read ({err})")
            continue
        if pieces:
            worked = sum(1 for cell in cells if (cell / PIECES).is_file() or (cell / LEGACY_PIECES).is_file())
            lines.append(f"  {name}: {len(pieces)} job(s) on {worked} cell(s), "
                         f"{sum(piece_seconds(p) for p in pieces) / 60:.1f} job-minutes")
    return ["compute, as each cell's trainer recorded it:", *lines] if lines else []


def pending_lines(jobs: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Why Slurm has not started the run's pending jobs (squeue's reasons), per group and reason, with what frees
    a held job: a job held or waiting on nodes out of service never starts by itself."""
    pending = {j["job_id"]: group for (group, _), j in jobs.items() if j["state"] == "PENDING"
               and j.get("backend") == "slurm"}
    reasons = pending_reasons(list(pending)) if pending else {}
    by_reason: dict[tuple[str, str], list[str]] = {}
    for jid, reason in reasons.items():
        by_reason.setdefault((pending[jid], reason), []).append(jid)
    lines = []
    for (group, reason), ids in sorted(by_reason.items()):
        what = ""
        if is_held(reason):
            listed = " ".join(sorted(ids)[:4]) + (" ..." if len(ids) > 4 else "")
            what = f"; held: `scontrol release {listed}` frees {'them' if len(ids) > 1 else 'it'}"
        elif cannot_start(reason):
            what = "; cannot start as submitted: scancel, lower the sweep's resources and relaunch"
        elif waits_for_nodes(reason):
            what = f"; out of service: {nodes_out_of_service() or 'see sinfo -R'}"
        lines += textwrap.wrap(f"{group}: {len(ids)} job{'s' if len(ids) > 1 else ''} pending, {reason}{what}", WIDTH,
                               initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False,
                               break_long_words=False)
    return ["pending jobs, as squeue gives the reason:", *lines] if lines else []


def recorded_plan(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Group name -> the record of the latest launch that planned it."""
    plan: dict[str, dict[str, Any]] = {}
    for launch in mf.read(run_dir)["launches"]:
        for record in launch.get("plan", []):
            plan[record["name"]] = record
    return plan


def render(run_dir: Path, verbose: bool = False) -> str:
    jobs = job_states(run_dir)
    by_group: dict[str, Counter[str]] = {}
    stage_of: dict[str, str] = {}
    plan = recorded_plan(run_dir)
    for name, record in plan.items():
        by_group.setdefault(name, Counter())
        stage_of[name] = record["stage"]
    for (group, _), job in jobs.items():
        by_group.setdefault(group, Counter())[job["state"]] += 1
        stage_of[group] = job["stage"]
    rows = []
    for g, c in by_group.items():
        text = group_progress(plan[g]) if g in plan else ""
        rows.append([stage_of[g], g, ", ".join(f"{s} {n}" for s, n in sorted(c.items())) or "-", text])
    out = [format_table(["stage", "group", "jobs by state", "progress"], rows)]
    for extra in (skipped_lines(plan), compute_lines(plan), pending_lines(jobs)):
        if extra:
            out += ["", *extra]
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
