"""Seconds per training step for each task and loss at the study's low resolution, the ratio to MSE, and DDP with
2 gloo processes against 1 process, in one run.

    .venv/bin/python -m benchmarks.bench_train [--repeats 7]

It generates a small Karman dataset (128x64 -> 64x32) in a temporary directory. Perceptual losses pad 64x32
fields to 64x64 as the study did (LSiM needs 44 px a side); the VGG-based losses also run in bfloat16, padded
and at the fields' own 64x32 (they need 16 px). Trunks missing from the weight store are random files of the
right shapes (speed does not depend on the values), as in bench_losses.

The arithmetic floor: a perceptual loss's convolutions cost three forward passes per call (prediction and
target forward, the prediction's backward to its input; the weights are frozen). At the best throughput this
machine reaches on VGG-16's heaviest layer, that FLOP count gives the least time any exact implementation of
the loss could add to the SOL step, hence the best ratio to MSE reachable here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.baseline_sol import legacy_forward
from benchmarks.bench_losses import random_trunks
from benchmarks.common import median_seconds, table, write
from fluidperc.datasets import generate
from fluidperc.datasets.spec import DatasetSpec
from fluidperc.losses import get_loss
from fluidperc.tasks.cell import CellConfig
from fluidperc.datasets.frames import channel_stats
from fluidperc.tasks.base import TaskData, build_model, sample_loss
from fluidperc.weights import CATALOG, WeightStore, default_dirs

PAD = {"pad_to": [64, 64]}
BF16 = {"precision": "bfloat16"}
LOSSES = ["mse", {"name": "lsim", **PAD}, {"name": "vgg", "layer": "relu3_3", **PAD},
          {"name": "lpips", "net": "alex", **PAD}, {"name": "lpips", "net": "vgg", **PAD},
          {"name": "vgg", "layer": "relu3_3", **PAD, **BF16}, {"name": "lpips", "net": "vgg", **PAD, **BF16},
          {"name": "vgg", "layer": "relu3_3", **BF16}, {"name": "lpips", "net": "vgg", **BF16}]
BASELINE = "mse (PhiFlow-field correction, baseline)"
SPEC = {"scene": "karman", "resolution": [128, 64], "factor": 2, "train_reynolds": [1.0e5, 3.0e5, 6.0e5],
        "test_reynolds": [2.0e5], "steps": 30, "keep_from": 10, "sims_per_task": 4}


def make_cell(root: Path, task: str, loss, steps: int = 10) -> CellConfig:
    batch = 3 if task == "sol" else 8
    return CellConfig(task=task, loss=loss, scene="karman", data_dir=str(root), resolution=(64, 32),
                      high_resolution=(128, 64) if task == "sr" else None, seed=0,
                      settings={"steps": steps, "batch_size": batch, "unroll": 4, "lr": 1e-3,
                                "checkpoint_every": 1000, "validate_every": 1000})


def training_step(cell: CellConfig, store: WeightStore, phiflow_fields: bool = False):
    """One optimiser step of the cell on a fixed batch, as a closure. ``phiflow_fields``: SOL's correction through
    PhiFlow's field resampling (the path before the torch correction), the baseline row."""
    torch.manual_seed(0)
    data = TaskData(cell)
    model = build_model(cell, data)
    if phiflow_fields:
        model.forward = legacy_forward(model, {})
    loss_fn = get_loss(cell.loss_spec, channel_stats((data.high or data.low).stats, data.variable), store)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = data.batch(data.train_index[: cell.settings.batch_size])

    def step():
        opt.zero_grad()
        sample_loss(model, batch, loss_fn, cell).backward()
        opt.step()

    return step


def interleaved_seconds(steps: dict[str, Any], repeats: int) -> dict[str, list[float]]:
    """Rounds of one step per loss, so that every loss meets the same machine: load on a shared VM drifts by
    20-30% over minutes, which sequential blocks would turn into differences between losses."""
    for step in steps.values():
        step(), step()
    times: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(repeats):
        for label, step in steps.items():
            start = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - start)
    return times


def row_label(cell: CellConfig) -> str:
    spec = cell.loss_spec
    return spec.label + (" pad64" if getattr(spec, "pad_to", None) else "")


def conv_flops_per_call(loss_fn, shape: tuple[int, ...]) -> float:
    """FLOPs of a loss's convolutions in one training call: the hooks see the prediction's and the target's
    forward (2 passes); the prediction's backward to its input adds a third."""
    counted = 0.0

    def hook(mod, inp, out):
        nonlocal counted
        counted += 2.0 * out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in loss_fn.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            loss_fn(torch.randn(shape), torch.randn(shape))
    finally:
        for h in handles:
            h.remove()
    return counted * 1.5


def peak_conv_flops() -> dict[str, float]:
    """FLOP/s of VGG-16's heaviest layer (conv1_2: 64 -> 64 channels, 3x3, at 64x64, channels-last), best of 7."""
    rates = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        x = torch.randn(24, 64, 64, 64, dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(64, 64, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
        best, _ = min(median_seconds(lambda: torch.nn.functional.conv2d(x, w, padding=1), 1, warmup=1) for _ in range(7))
        rates[name] = 2.0 * 24 * 64 * 64 * 64 * 64 * 9 / best
    return rates


def ddp_seconds_per_step(root: Path, nproc: int, env: dict) -> float:
    """Per-step time of SR training from the difference of a 5-step and a 25-step run (start-up cancels out)."""
    times = []
    for steps in (5, 25):
        with tempfile.TemporaryDirectory() as out:
            cfg = Path(out) / "cell.json"
            cfg.write_text(make_cell(root, "sr", "mse", steps).model_dump_json())
            # the ranks are started as Slurm starts them (environment only): torchrun's agent would listen on *
            cmd = [sys.executable, "-m", "fluidperc.train", str(cfg), str(Path(out) / "run"), "--no-progress"]
            dist_env = {**env, "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "0"}
            t0 = time.perf_counter()
            ranks = [subprocess.Popen(cmd, env={**dist_env, "RANK": str(r), "LOCAL_RANK": str(r)},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for r in range(nproc)]
            for rank in ranks:
                _, err = rank.communicate()
                if rank.returncode:
                    raise RuntimeError(f"a DDP rank failed: {err.decode()[-2000:]}")
            times.append(time.perf_counter() - t0)
    return (times[1] - times[0]) / 20


def sol_floor(root: Path, store: WeightStore, results: list[dict]) -> dict:
    """Each perceptual loss's conv FLOPs per SOL step, and the best ratio to MSE they allow on this machine."""
    peak = peak_conv_flops()
    sol = {r["loss"]: r["median_s"] for r in results if r["task"] == "sol" and r["loss"] != BASELINE}
    rows, out = [], {"peak_conv_flop_per_s": peak, "losses": {}}
    for loss in LOSSES[1:]:
        cell = make_cell(root, "sol", loss)
        label = row_label(cell)
        if label not in sol:
            continue
        data = TaskData(cell)
        loss_fn = get_loss(cell.loss_spec, channel_stats(data.low.stats, data.variable), store)
        flops = cell.settings.unroll * conv_flops_per_call(loss_fn, tuple(data.batch(data.train_index[:3])["targets"][:, 0].shape))
        least = flops / peak[cell.loss_spec.precision]
        best = (sol["mse"] + least) / sol["mse"]
        measured = sol[label] - sol["mse"]
        rows.append([label, f"{flops / 1e9:.1f}", f"{measured * 1e3:.0f}", f"{least * 1e3:.0f}", f"{best:.2f}x",
                     f"{sol[label] / sol['mse']:.2f}x"])
        out["losses"][label] = {"gflop_per_step": flops / 1e9, "added_s": measured, "least_added_s": least,
                                "best_ratio": best, "measured_ratio": sol[label] / sol["mse"]}
    print(f"peak conv throughput (VGG conv1_2, channels-last): float32 {peak['float32'] / 1e9:.0f} GFLOP/s, "
          f"bfloat16 {peak['bfloat16'] / 1e9:.0f} GFLOP/s")
    print(table(["SOL step, loss", "conv GFLOP", "added ms (measured)", "added ms at peak", "best ratio", "measured"], rows))
    return out


def rollout_per_frame(root: Path, repeats: int, steps: int = 12) -> dict[str, float]:
    """Seconds per frame of SOL rollouts as the evaluation job runs them (no autograd, the test sims in one batch):
    corrected (torch correction), corrected with the network in bfloat16 (evaluate.settings.precision),
    corrected through PhiFlow fields (the baseline) and uncorrected; and the correction network alone on the same
    frames, the part of a corrected frame that is arithmetic, not the solver."""
    cell = make_cell(root, "sol", "mse")
    torch.manual_seed(0)
    data = TaskData(cell)
    model = build_model(cell, data).eval()
    torch.manual_seed(0)
    bf16 = build_model(cell, data).eval().for_inference("bfloat16")
    s = torch.tensor(data.low.test_sims + data.low.train_sims)
    args = (data.low.velocity_x[s, 0], data.low.velocity_y[s, 0], data.low.marker[s, 0], data.low.reynolds[s].float())
    legacy = legacy_forward(model, {})
    frames = torch.randn(len(s), 2, *cell.resolution)
    runs = {"corrected": lambda: model(*args, steps),
            "corrected, bfloat16 network": lambda: bf16(*args, steps),
            "corrected, PhiFlow fields (baseline)": lambda: legacy(*args, steps),
            "uncorrected": lambda: model(*args, steps, corrected=False),
            "the network alone (float32)": lambda: [model.correction(frames, args[3]) for _ in range(steps)],
            "the network alone (bfloat16)": lambda: [bf16.correction(frames, args[3]) for _ in range(steps)]}
    with torch.no_grad():
        times = interleaved_seconds(runs, repeats)
    return {k: statistics.median(v) / (steps * len(s)) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--tasks", nargs="+", default=["ae", "sr", "sol"])
    p.add_argument("--no-ddp", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        spec = DatasetSpec.model_validate(SPEC)
        generate.generate_all(spec, root)
        store, random_ones = random_trunks(WeightStore(default_dirs(), dict(CATALOG)), Path(tmp))
        rows, results = [], []
        for task in args.tasks:
            steps = {}
            for loss in LOSSES:
                cell = make_cell(root, task, loss)
                if cell.loss_spec.name == "lsim" and not store.present("lsim"):
                    print("skipping lsim: LSiM.pth not found")
                    continue
                steps[row_label(cell)] = training_step(cell, store)
            if task == "sol":
                steps[BASELINE] = training_step(make_cell(root, task, "mse"), store, phiflow_fields=True)
            times = interleaved_seconds(steps, args.repeats)
            base = statistics.median(times["mse"])
            for label, ts in times.items():
                med = statistics.median(ts)
                rows.append([task, label, f"{med * 1e3:.0f}", f"{med / base:.2f}x"])
                results.append({"task": task, "loss": label, "median_s": med, "times_s": ts, "ratio_to_mse": med / base})
        print(table(["task", "loss", "ms/step (median)", "vs mse"], rows))
        floor = sol_floor(root, store, results) if "sol" in args.tasks else {}
        rollout = rollout_per_frame(root, args.repeats) if "sol" in args.tasks else {}
        if rollout:
            base = rollout["uncorrected"]
            print(table(["SOL rollout (no autograd, 4 sims)", "ms/frame", "vs uncorrected"],
                        [[k, f"{v * 1e3:.2f}", f"{v / base:.2f}x"] for k, v in rollout.items()]))
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
    print(f"wrote {write('bench_train', {'repeats': args.repeats, 'random_trunks': random_ones, 'results': results, 'sol_floor': floor, 'rollout_s_per_frame': rollout, 'ddp_seconds_per_step': ddp})}")


if __name__ == "__main__":
    main()
