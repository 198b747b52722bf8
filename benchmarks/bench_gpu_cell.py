"""What one study-scale Solver-in-the-Loop cell costs on a GPU, measured rather than estimated.

    python -m benchmarks.bench_gpu_cell                        # on one GPU (about 4.5 min on an H200)
    python -m benchmarks.bench_gpu_cell --device cpu --quick   # the same code on the CPU (make test runs it)

The cell is the first one that hpc plans from sweeps/sol_all_losses.yaml (SOL, Karman 64x32, MSE, seed 0, the
sweep's settings: batch 3, m = 4, validation and checkpoints every 500 steps), trained by fluidperc.train.run as a
job would train it. Only its length is cut (--steps), with its validation interval where the shorter run would
otherwise validate fewer than three times, and its data is the sweep's Karman dataset with fewer stored frames
(--frames): a step costs the same whatever the store holds.

Variants, each a fresh cell: eager, graphed (``cuda_graph: true``), and, as the baseline in the same run, eager on
2 CPU threads of the same host for a few steps. Per variant: the median training step (timed around the trainer's
own step), the amortised cost per step between the first and the last validation (validation, checkpoints and
logging included), the run's wall time, and from these the projected wall time of the sweep's full cell.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS, benchmark_device, machine, step_timer, table

SWEEP = Path(__file__).resolve().parents[1] / "sweeps" / "sol_all_losses.yaml"


def study_cell(data_dir: Path, frames: int, quick: bool):
    """The sweep's first SOL cell and its Karman dataset, planned by hpc from the sweep file."""
    from hpc.spec import load_sweep
    from hpc.stages.train import cells

    overrides = [f"datagen.data_dir={data_dir}", f"datagen.datasets.0.steps={500 + frames}"]
    if quick:  # a small grid and few sims: the CPU test checks the code path, not the figures
        overrides += ["datagen.datasets.0.resolution=[32, 16]", "train.datasets.0.resolution=[16, 8]",
                      "datagen.datasets.0.train_reynolds=[1.0e+5, 4.0e+5]", "datagen.datasets.0.test_reynolds=[2.0e+5]",
                      "train.settings.val_samples=2", "train.settings.val_rollout=4"]
    sweep = load_sweep(SWEEP, overrides)
    cell = cells(sweep)[0]
    assert (cell.task, cell.scene, cell.loss_spec.label, cell.seed) == ("sol", "karman", "mse", 0), cell.label
    return sweep.datagen.datasets[0], cell


def train(cell, out: Path, device: torch.device) -> dict[str, Any]:
    """Train the cell; the time of each step and of each validation, read through the trainer's own hooks."""
    from fluidperc.train import run

    steps: list[float] = []
    validations: list[tuple[int, float]] = []

    time_steps = step_timer(steps, device)

    def hook(trainer) -> None:
        time_steps(trainer)
        trainer.on_validate = lambda row, _ckpt: validations.append((row["step"], time.perf_counter()))

    t0 = time.perf_counter()
    run(cell, out, progress=False, trainer_hook=hook)
    wall = time.perf_counter() - t0
    (s0, t_first), (s1, t_last) = validations[0], validations[-1]
    amortised = (t_last - t_first) / (s1 - s0) if s1 > s0 else statistics.median(steps)
    steady = steps[len(steps) // 4:]  # a graph is captured at the fourth step; the first steps warm up
    return {"steps": len(steps), "wall_s": wall, "median_step_s": statistics.median(steady),
            "amortised_step_s": amortised, "fixed_s": wall - amortised * len(steps)}


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.3g} ms"


def markdown(payload: dict[str, Any]) -> str:
    """The result as the Markdown table RESULTS.md quotes (tests/test_results.py regenerates it from the JSON)."""
    from fluidperc.analysis.tables import markdown_table

    names = {"eager": "eager (the sweep as committed)", "graphed": "`train.settings.cuda_graph: true`",
             "eager, 2 CPU threads": "eager, 2 CPU threads of the same host"}
    rows = [[names.get(name, name), _ms(r["median_step_s"]), _ms(r["amortised_step_s"]),
             f"{r['validate_every']} steps", f"{r['projected_full_cell_min']:.3g} min"]
            for name, r in payload["variants"].items()]
    return markdown_table([f"{payload['cell']} on {payload['machine']['gpu'] or payload['machine']['cpu']}",
                           "median step", "per step, with validation and checkpoints", "validating every",
                           f"a {payload['full_steps']}-step cell, projected"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--quick", action="store_true", help="a tiny grid and a few steps (the CPU test)")
    p.add_argument("--steps", type=int, default=None, help="steps of the eager and graphed cells (default 1500 "
                   "graphed and 600 eager; quick 8)")
    p.add_argument("--cpu-steps", type=int, default=None, help="steps of the 2-thread CPU baseline (default 30)")
    p.add_argument("--frames", type=int, default=None, help="stored frames per sim (default 200, quick 12)")
    p.add_argument("--json", type=Path, default=RESULTS / "bench_gpu_cell.json")
    args = p.parse_args(argv)
    device = benchmark_device(args.device, "bench_gpu_cell")
    if device is None:
        return 2
    frames = args.frames or (12 if args.quick else 200)
    cpu_steps = args.cpu_steps or (4 if args.quick else 30)
    from fluidperc.datasets import generate

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        spec, cell = study_cell(tmp / "data", frames, args.quick)
        full_steps = cell.settings.steps
        t0 = time.perf_counter()
        generate.generate_all(spec, tmp / "data", device="cpu")
        datagen_s = time.perf_counter() - t0
        print(f"datagen: {len(spec.sims())} sims x {frames} frames at {spec.resolution} in {datagen_s:.0f} s",
              flush=True)
        every = cell.settings.validate_every
        variants = [("eager", args.device, False, args.steps or (8 if args.quick else 600)),
                    ("graphed", args.device, True, args.steps or (8 if args.quick else 1500)),
                    ("eager, 2 CPU threads", "cpu", False, cpu_steps)]
        threads = torch.get_num_threads()
        for name, dev, graphed, steps in variants:
            # validate at least twice inside the shortened run, so the amortised rate includes validation
            v = min(every, max(1, steps // 3))
            settings = cell.settings.model_copy(update={"steps": steps, "device": dev, "cuda_graph": graphed,
                                                        "validate_every": v, "checkpoint_every": v})
            if dev == "cpu":
                torch.set_num_threads(2)
            try:
                r = train(cell.model_copy(update={"settings": settings}), tmp / name.replace(" ", "_").replace(",", ""),
                          torch.device(dev) if dev == "cpu" else device)
            finally:
                torch.set_num_threads(threads)
            r["validate_every"] = v
            r["projected_full_cell_min"] = (r["fixed_s"] + r["amortised_step_s"] * full_steps) / 60
            results[name] = r
            print(f"[{name}] {r['steps']} steps in {r['wall_s']:.1f} s: median step {1e3 * r['median_step_s']:.1f} ms, "
                  f"amortised {1e3 * r['amortised_step_s']:.1f} ms/step", flush=True)
    base = results["eager, 2 CPU threads"]["median_step_s"]
    rows = [[name, r["steps"], f"{1e3 * r['median_step_s']:.1f}", f"{1e3 * r['amortised_step_s']:.1f}",
             f"{r['wall_s']:.1f}", f"{r['projected_full_cell_min']:.1f}", f"{base / r['median_step_s']:.1f}x"]
            for name, r in results.items()]
    payload = {"benchmark": "bench_gpu_cell", "machine": machine(), "device": str(device), "quick": args.quick,
               "sweep": str(SWEEP.relative_to(SWEEP.parents[1])), "cell": cell.label, "full_steps": full_steps,
               "frames_per_sim": frames, "datagen_s": datagen_s, "variants": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=1))
    print()
    print(table(["variant", "steps", "median ms/step", "amortised ms/step", "wall s",
                 f"{full_steps}-step cell, min", "vs 2 CPU threads"], rows))
    print()
    print(markdown(payload))
    print(f"\n{cell.label} from {payload['sweep']} on {payload['machine']['gpu'] or payload['machine']['cpu']}; "
          f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
