"""Shared by the benchmarks: the machine they ran on, medians, and the JSON result file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from hpc.measured import cpu_model  # the name the planner matches bench_pack.json against

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import torch

    cpu = cpu_model()
    # FLUIDPERC_COMMIT first: a copy of the tree on another machine (a GPU lease) may carry a stale .git
    commit = os.environ.get("FLUIDPERC_COMMIT", "")
    if not commit:
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        except OSError:
            commit = ""
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "commit": commit,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=1))
    return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def benchmark_device(choice: str, prog: str):
    """The torch device a GPU benchmark's --device names, or None after saying why it cannot run here."""
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        print(f"{prog}: --device cuda but torch sees no CUDA GPU; run it on a GPU node, or use --device cpu",
              file=sys.stderr)
        return None
    return torch.device("cuda", 0) if choice == "cuda" else torch.device("cpu")


def step_timer(times: list[float], device: Any) -> Callable[[Any], None]:
    """A ``trainer_hook`` that appends each training step's wall time to ``times``, waiting for ``device`` to
    finish first: what the benchmarks time is the trainer's own step, not a copy of it."""
    from fluidperc.devices import synchronize

    def hook(trainer: Any) -> None:
        inner = trainer._train_step

        def timed_step(*args: Any) -> Any:
            t0 = time.perf_counter()
            out = inner(*args)
            synchronize(device)
            times.append(time.perf_counter() - t0)
            return out

        trainer._train_step = timed_step

    return hook

