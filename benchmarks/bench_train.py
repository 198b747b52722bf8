"""Seconds per training step for each task and loss at the study's low resolution, the ratio to MSE, and DDP with
2 gloo processes against 1 process, in one run.

    .venv/bin/python -m benchmarks.bench_train [--repeats 5]

It generates a small Karman dataset (128x64 -> 64x32) in a temporary directory. Perceptual losses pad 64x32
fields to 64x64 as the study did. Trunks missing from the weight store are random files of the right shapes
(speed does not depend on the values), as in bench_losses. The VGG-based losses also run with precision:
bfloat16 (autocast), which is what brings them under the 1.5x target on CPUs with AVX512-BF16.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench_losses import random_trunks
from benchmarks.common import median_seconds, table, write
from fluidperc.datasets import generate
from fluidperc.datasets.spec import DatasetSpec
from fluidperc.losses import get_loss
from fluidperc.train import CellConfig
from fluidperc.train.data import channel_stats
from fluidperc.train.tasks import TaskData, build_model, sample_loss
from fluidperc.weights import CATALOG, WeightStore, default_dirs

PAD = {"pad_to": [64, 64]}
BF16 = {"precision": "bfloat16"}
LOSSES = ["mse", {"name": "lsim", **PAD}, {"name": "vgg", "layer": "relu3_3", **PAD},
          {"name": "lpips", "net": "alex", **PAD}, {"name": "lpips", "net": "vgg", **PAD},
          {"name": "vgg", "layer": "relu3_3", **PAD, **BF16}, {"name": "lpips", "net": "vgg", **PAD, **BF16}]
SPEC = {"scene": "karman", "resolution": [128, 64], "factor": 2, "train_reynolds": [1.0e5, 3.0e5, 6.0e5],
        "test_reynolds": [2.0e5], "steps": 30, "keep_from": 10, "sims_per_task": 4}


def make_cell(root: Path, task: str, loss, steps: int = 10) -> CellConfig:
    batch = 3 if task == "sol" else 8
    return CellConfig(task=task, loss=loss, scene="karman", data_dir=str(root), resolution=(64, 32),
                      high_resolution=(128, 64) if task == "sr" else None, seed=0,
                      settings={"steps": steps, "batch_size": batch, "unroll": 4, "lr": 1e-3,
                                "checkpoint_every": 1000, "validate_every": 1000})


def step_seconds(cell: CellConfig, store: WeightStore, repeats: int) -> tuple[float, list[float]]:
    torch.manual_seed(0)
    data = TaskData(cell)
    model = build_model(cell, data)
    loss_fn = get_loss(cell.loss_spec, channel_stats((data.high or data.low).stats, data.variable), store)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = data.batch(data.train_index[: cell.settings.batch_size])

    def step():
        opt.zero_grad()
        sample_loss(model, batch, loss_fn, cell).backward()
        opt.step()

    return median_seconds(step, repeats, warmup=2)


def ddp_seconds_per_step(root: Path, nproc: int, env: dict) -> float:
    """Per-step time of SR training from the difference of a 5-step and a 25-step run (start-up cancels out)."""
    times = []
    for steps in (5, 25):
        with tempfile.TemporaryDirectory() as out:
            cfg = Path(out) / "cell.json"
            cfg.write_text(make_cell(root, "sr", "mse", steps).model_dump_json())
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
                   f"--master_port={port}", "-m", "fluidperc.train", str(cfg), str(Path(out) / "run"), "--no-progress"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            times.append(time.perf_counter() - t0)
    return (times[1] - times[0]) / 20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tasks", nargs="+", default=["ae", "sr", "sol"])
    p.add_argument("--no-ddp", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        spec = DatasetSpec.model_validate(SPEC)
        generate.prepare(spec, root)
        generate.simulate_group(spec.model_dump_json(), str(root), list(range(len(spec.sims()))), progress=False)
        generate.finalize(spec.model_dump_json(), str(root))
        store, random_ones = random_trunks(WeightStore(default_dirs(), dict(CATALOG)), Path(tmp))
        rows, results = [], []
        for task in args.tasks:
            base = None
            for loss in LOSSES:
                cell = make_cell(root, task, loss)
                label = cell.loss_spec.label
                if label == "lsim" and not store.present("lsim"):
                    print("skipping lsim: LSiM.pth not found")
                    continue
                med, times = step_seconds(cell, store, args.repeats)
                base = med if label == "mse" else base
                rows.append([task, label, f"{med * 1e3:.0f}", f"{med / base:.2f}x"])
                results.append({"task": task, "loss": label, "median_s": med, "times_s": times, "ratio_to_mse": med / base})
        print(table(["task", "loss", "ms/step (median)", "vs mse"], rows))
        ddp = {}
        if not args.no_ddp:
            env = {**os.environ, "FLUIDPERC_WEIGHTS": str(Path(tmp))}
            for nproc in (1, 2):
                ddp[nproc] = ddp_seconds_per_step(root, nproc, env)
            samples = {n: 8 * n / s for n, s in ddp.items()}
            print(table(["SR (mse), batch 8 per process", "s/step", "samples/s"],
                        [[f"{n} gloo process(es)", f"{ddp[n]:.3f}", f"{samples[n]:.0f}"] for n in ddp]))
    if random_ones:
        print(f"random-valued trunks (same architecture and cost) for: {', '.join(random_ones)}")
    print(f"wrote {write('bench_train', {'repeats': args.repeats, 'random_trunks': random_ones, 'results': results, 'ddp_seconds_per_step': ddp})}")


if __name__ == "__main__":
    main()
