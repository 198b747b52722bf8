"""Benchmark figures measured on a machine like this one, for the planner: the pack size that trained cells
fastest (train.cells_per_task: auto) and the step times the dry run's cost estimate starts from."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

BENCH_PACK = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "bench_pack.json"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def pack_benchmark(path: Path = BENCH_PACK) -> dict[str, Any] | None:
    """benchmarks/results/bench_pack.json when it was measured on the CPU of a machine like this one (same CPU
    model and core count), else None."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    m = data.get("machine", {})
    if data.get("device") != "cpu" or m.get("cpu") != cpu_model() or m.get("cores") != len(os.sched_getaffinity(0)):
        return None
    return data


def best_pack_size(task: str, threads: int, mem_gb: float | None, bench: dict[str, Any]) -> int | None:
    """The cells per job at which ``task``'s packs of ``threads`` threads trained the most cell-steps per second,
    among those whose measured peak memory fits ``mem_gb``; None when none was measured."""
    candidates = []
    for r in bench.get("rows", []):
        if r["task"] != task or r["way"] == "solo":
            continue
        per_job = r["k"] // r["processes"]
        if r["threads"] != threads or (mem_gb is not None and r["peak_mb"] > mem_gb * 1024):
            continue
        candidates.append((r["cell_steps_per_s"], -per_job, per_job))
    return max(candidates)[2] if candidates else None
