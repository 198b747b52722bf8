"""Cell-steps per second of packed cells (train.cells_per_task) against the same cells trained one per process,
for AE, SR and SOL at the study's Karman grid (64x32 from 128x64; batch 8 for AE and SR, 3 sims and m = 4 for
SOL, MSE), all in one run:

    .venv/bin/python -m benchmarks.bench_pack [--tasks sol,sr,ae] [--ks 1,2,4,8,16] [--steps 10]

For each task and K:

- ``solo``: the baseline. K processes of one cell each, one torch thread each, as many at a time as the local
  backend runs them (cores // cpus_per_task: two on 2 cores). Throughput = cells running at once / their median
  step time.
- ``pack``: one process trains the K cells as one computation (fluidperc.train.run_pack) with every core's
  thread: K / its median step time.
- ``2 packs``: two processes of K/2 cells each, one thread each, side by side (the local backend's way to run a
  pack job with cpus_per_task: 1): K / the slower one's median step time.

Step times are read through the trainer's own step (its batches, losses, backward and Adam steps) after the
first three steps; validation, checkpoints and process start-up are left out on both sides. Peak memory is each
process's maximum resident set (CUDA: the device's peak allocation). ``--device cuda`` runs the packs on the GPU
(one process; cuda_graph with --graph) against one cell on the GPU. Writes benchmarks/results/bench_pack.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import step_timer, table, write

SPEC = {"scene": "karman", "resolution": [128, 64], "factor": 2, "train_reynolds": [1.0e5, 3.0e5, 6.0e5, 8.0e5],
        "test_reynolds": [2.0e5], "steps": 40, "keep_from": 10, "sims_per_task": 5}
WARM = 3  # steps left out of the median: first calls, lazy initialisation, PhiFlow's tracing


def cells(root: Path, task: str, k: int, steps: int, first_seed: int = 0, device: str = "cpu",
          graph: bool = False) -> list[Any]:
    from fluidperc.tasks.cell import CellConfig

    batch = 3 if task == "sol" else 8
    return [CellConfig(task=task, loss="mse", scene="karman", data_dir=str(root), resolution=(64, 32),
                       high_resolution=(128, 64) if task == "sr" else None, seed=first_seed + i,
                       settings={"steps": steps, "batch_size": batch, "unroll": 4, "lr": 1e-3 * (1 + 0.1 * i),
                                 "checkpoint_every": 10_000, "validate_every": 10_000, "val_samples": 2,
                                 "device": device, "cuda_graph": graph})
            for i in range(k)]


def worker(args: argparse.Namespace) -> None:
    """One training process: prints {"steps": [...], "peak_mb": ...} as its last line."""
    import torch

    from fluidperc.train.trainer import run_pack

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    todo = cells(Path(args.root), args.task, args.k, args.steps, args.first_seed, args.device, args.graph)
    times: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        run_pack(todo, [Path(out) / c.label for c in todo], progress=False, trainer_hook=step_timer(times, device))
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps({"steps": times, "peak_mb": peak / 2**20}))


def flops_per_cell_step(root: Path, task: str) -> float:
    """Floating-point operations of one cell's network in a training step (forward and backward, counted by
    torch on the inputs the step gives it: SOL's correction runs on batch x m states). The solver and the loss
    are left out: the network is what a pack cannot share."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fluidperc.tasks.base import TaskData, build_model

    cell = cells(root, task, 1, 10)[0]
    torch.manual_seed(0)
    data = TaskData(cell)
    net = build_model(cell, data).net
    s = cell.settings
    if task == "sol":
        x = torch.randn(s.batch_size * s.unroll, 3, *cell.resolution)
    else:
        x = data.batch(data.train_index[: s.batch_size])["input"]
    with FlopCounterMode(display=False) as counter:
        net(x).square().sum().backward()
    return float(counter.get_total_flops())


def sgemm_gflops(threads: int) -> float:
    """This machine's float32 matrix-product throughput at ``threads`` threads (2048^2, median of 5): the
    ceiling the networks' convolutions work against."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    times = []
    for _ in range(6):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * 2048**3 / statistics.median(times[1:]) / 1e9


def spawn(root: Path, task: str, k: int, threads: int, steps: int, first_seed: int = 0, device: str = "cpu",
          graph: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "benchmarks.bench_pack", "--worker", "--root", str(root), "--task", task, "--k", str(k),
           "--threads", str(threads), "--steps", str(steps), "--first-seed", str(first_seed), "--device", device]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen(cmd + (["--graph"] if graph else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def finished(proc: subprocess.Popen) -> dict[str, Any]:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker failed ({proc.returncode}): {err[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["median_s"] = statistics.median(result["steps"][WARM:])
    return result


def run_at_once(root: Path, jobs: list[tuple[str, int, int, int, int]], slots: int) -> list[dict[str, Any]]:
    """Run (task, k, threads, steps, first_seed) jobs, ``slots`` at a time, like the local backend."""
    queue, running, results = list(enumerate(jobs)), [], {}
    while queue or running:
        while queue and len(running) < slots:
            i, job = queue.pop(0)
            running.append((i, spawn(root, *job)))
        i, proc = running.pop(0)
        results[i] = finished(proc)
    return [results[i] for i in range(len(jobs))]


def measure(root: Path, task: str, k: int, steps: int, cores: int) -> list[dict[str, Any]]:
    rows = []
    slots = min(cores, k)
    solo = run_at_once(root, [(task, 1, 1, steps, i) for i in range(k)], slots)
    t_solo = statistics.median(r["median_s"] for r in solo)
    rows.append({"task": task, "k": k, "way": "solo", "processes": k, "threads": 1, "at_once": slots,
                 "median_step_s": t_solo, "cell_steps_per_s": slots / t_solo,
                 "peak_mb": max(r["peak_mb"] for r in solo)})
    pack = finished(spawn(root, task, k, cores, steps))
    rows.append({"task": task, "k": k, "way": "pack", "processes": 1, "threads": cores, "at_once": 1,
                 "median_step_s": pack["median_s"], "cell_steps_per_s": k / pack["median_s"], "peak_mb": pack["peak_mb"]})
    if k >= 2 and k % 2 == 0 and cores >= 2:
        halves = run_at_once(root, [(task, k // 2, 1, steps, 0), (task, k // 2, 1, steps, k // 2)], 2)
        t = max(r["median_s"] for r in halves)
        rows.append({"task": task, "k": k, "way": "2 packs", "processes": 2, "threads": 1, "at_once": 2,
                     "median_step_s": t, "cell_steps_per_s": k / t, "peak_mb": max(r["peak_mb"] for r in halves)})
    return rows


def measure_gpu(root: Path, task: str, k: int, steps: int, graph: bool) -> list[dict[str, Any]]:
    rows = []
    for way, n in (("solo", 1), ("pack", k)):
        r = finished(spawn(root, task, n, 1, steps, 0, "cuda", graph))
        rows.append({"task": task, "k": k, "way": f"{way} (cuda{', graph' if graph else ''})", "processes": 1,
                     "threads": 1, "at_once": 1, "median_step_s": r["median_s"], "cell_steps_per_s": n / r["median_s"],
                     "peak_mb": r["peak_mb"]})
    return rows


def best_packs(rows: list[dict[str, Any]], tasks: list[str]) -> dict[str, dict[str, Any]]:
    """Per task, the packed way with the highest ratio to solo cells, among K >= 2: at K = 1 the solo baseline is
    one process on one thread beside an idle core, so its ratio measures threads, not packing."""
    best = {}
    for task in tasks:
        packed = [r for r in rows if r["task"] == task and r["k"] >= 2 and not r["way"].startswith("solo")]
        if packed:
            top = max(packed, key=lambda r: r["ratio_to_solo"])
            best[task] = {"k": top["k"], "way": top["way"], "ratio_to_solo": top["ratio_to_solo"]}
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_pack", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="sol,sr,ae", help="comma-separated tasks")
    p.add_argument("--ks", default="1,2,4,8,16", help="pack sizes K")
    p.add_argument("--steps", type=int, default=10, help="training steps per process (the first 3 are left out)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--graph", action="store_true", help="with --device cuda: capture each step as a CUDA graph")
    p.add_argument("--quick", action="store_true", help="a smoke run (K = 1, 2; 5 steps) that writes no result")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name, kind in (("--root", str), ("--task", str), ("--k", int), ("--threads", int), ("--first-seed", int)):
        p.add_argument(name, type=kind, default=0 if kind is int else "", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    from fluidperc.datasets import generate
    from fluidperc.datasets.spec import DatasetSpec

    tasks = args.tasks.split(",")
    ks = [1, 2] if args.quick else [int(k) for k in args.ks.split(",")]
    steps = 5 if args.quick else args.steps
    cores = len(os.sched_getaffinity(0))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate.generate_all(DatasetSpec.model_validate(SPEC), root)
        for task in tasks:
            for k in ks:
                rows += (measure_gpu(root, task, k, steps, args.graph) if args.device == "cuda"
                         else measure(root, task, k, steps, cores))
                print(f"{task} K={k}: " + ", ".join(f"{r['way']} {r['cell_steps_per_s']:.2f}" for r in rows
                                                      if r["task"] == task and r["k"] == k), flush=True)
        if not args.quick:  # the measured rows before the FLOP count, which can fail on a new PhiFlow
            write("bench_pack", {"device": args.device, "steps": steps, "spec": SPEC, "rows": rows, "partial": True})
        flops = {task: flops_per_cell_step(root, task) for task in tasks}
    base = {(r["task"], r["k"]): r["cell_steps_per_s"] for r in rows if r["way"].startswith("solo")}
    peak = sgemm_gflops(cores) if args.device == "cpu" else None
    for r in rows:
        r["ratio_to_solo"] = r["cell_steps_per_s"] / base[(r["task"], r["k"])]
        r["gflops"] = r["cell_steps_per_s"] * flops[r["task"]] / 1e9
    headers = ["task", "K", "way", "procs x threads", "median step [s]", "cell-steps/s", "x solo", "GFLOP/s",
               "peak MB"]
    print(table(headers, [[r["task"], r["k"], r["way"], f"{r['processes']}x{r['threads']}", f"{r['median_step_s']:.3f}",
                           f"{r['cell_steps_per_s']:.2f}", f"{r['ratio_to_solo']:.2f}", f"{r['gflops']:.0f}",
                           f"{r['peak_mb']:.0f}"] for r in rows]))
    print("network GFLOP per cell-step: " + ", ".join(f"{t} {f / 1e9:.1f}" for t, f in flops.items())
          + (f"; float32 matrix product on {cores} threads: {peak:.0f} GFLOP/s" if peak else ""))
    if args.quick:
        return 0
    best = best_packs(rows, tasks)
    path = write("bench_pack", {"device": args.device, "steps": steps, "spec": SPEC, "rows": rows, "best": best,
                                "gflop_per_cell_step": {t: f / 1e9 for t, f in flops.items()},
                                "sgemm_gflops": peak})
    print(f"best per task: {json.dumps(best)}\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
