"""Gather every cell's evaluation into RUN_DIR/results.zarr: one xarray Dataset with dims task, loss,
resolution, seed, test_sim, step and one variable per metric. Solver-in-the-Loop's uncorrected source sim is the
pseudo-loss "source". A cell without results stays NaN and its reason is kept in attrs["missing_cells"]."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from fluidperc.evaluation.curves import validation_curves
from fluidperc.evaluation.output import write_atomically
from fluidperc.evaluation.pipelines import baselines_by_name

RESULTS = "results.zarr"


def pseudo_losses() -> dict[str, dict[str, str]]:
    """Task or pipeline -> baselines stored beside a cell's own results (pseudo-loss -> variable suffix), shown on
    the loss axis: each registered task's (fluidperc.tasks) and pipeline's (fluidperc.evaluation.pipelines)."""
    return baselines_by_name()


def pseudo_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for paths in pseudo_losses().values() for name in paths))


def suffixes() -> tuple[str, ...]:
    return tuple(dict.fromkeys(suffix for paths in pseudo_losses().values() for suffix in paths.values()))


def ladder_results(cells: list[dict], found: dict[str, xr.Dataset], tasks: list[str], resolutions: list[str],
                   steps: list[int]) -> xr.Dataset:
    """The accuracy-vs-cost ladders (fluidperc.sim.ladder) of the combined pipeline and of SOL as
    ``ladder_<metric>`` over (task, resolution, rung, test_sim, step) and ``ladder_seconds_per_frame`` over (task,
    resolution, rung): the plain sim's errors are the same in every job of a task and grid (same start, same
    steps); its time is the median over them."""
    groups: dict[tuple[str, str], list[xr.Dataset]] = {}
    for c in cells:
        ds = found.get(c["label"])
        if ds is not None and "rung" in ds.dims:
            groups.setdefault((c["task"], c["resolution"]), []).append(ds)
    if not groups:
        return xr.Dataset()
    n_rungs = max(ds.sizes["rung"] for group in groups.values() for ds in group)
    n_sims = max(ds.sizes["test_sim"] for group in groups.values() for ds in group)
    names = sorted({v for group in groups.values() for ds in group for v in ds.data_vars
                    if v.startswith("ladder_") and v != "ladder_seconds_per_frame"})
    arrays = {v: np.full((len(tasks), len(resolutions), n_rungs, n_sims, len(steps)), np.nan) for v in names}
    seconds = np.full((len(tasks), len(resolutions), n_rungs), np.nan)
    grid = np.full((len(tasks), len(resolutions), n_rungs), "", dtype=object)
    cells_n = np.full((len(tasks), len(resolutions), n_rungs), np.nan)
    for (task, res), group in groups.items():
        t, r, first = tasks.index(task), resolutions.index(res), group[0]
        k, n = first.sizes["rung"], first.sizes["test_sim"]
        cols = [steps.index(int(x)) for x in first.step.values]
        for v in names:
            if v in first:
                arrays[v][t, r, :k, :n][..., cols] = first[v].values
        seconds[t, r, :k] = np.median(np.stack([ds.ladder_seconds_per_frame.values for ds in group]), axis=0)
        grid[t, r, :k], cells_n[t, r, :k] = first.rung.values, first.rung_cells.values
    dims = ("task", "resolution", "rung", "test_sim", "step")
    return xr.Dataset({v: (dims, a) for v, a in arrays.items()} | {"ladder_seconds_per_frame": (dims[:3], seconds)},
                      coords={"rung_grid": (dims[:3], grid.astype(str)), "rung_cells": (dims[:3], cells_n)})


def collect(run_dir: str, cells: list[dict]) -> str:
    """``cells``: dicts with label, task, loss, resolution, seed, eval_path, train_dir (for the validation
    curves) and (when it has none) reason."""
    run = Path(run_dir)
    found: dict[str, xr.Dataset] = {}
    missing: dict[str, str] = {}
    for c in cells:
        path = Path(c["eval_path"])
        if path.exists():
            found[c["label"]] = xr.open_zarr(path).load()
        else:
            missing[c["label"]] = c.get("reason") or "no evaluation results (training or evaluation did not finish)"
    tasks = sorted({c["task"] for c in cells})
    baselines = pseudo_losses()
    pseudo = [p for p in pseudo_names() if any(p in baselines.get(t, {}) for t in tasks)]
    losses = list(dict.fromkeys(c["loss"] for c in cells)) + pseudo
    resolutions = sorted({c["resolution"] for c in cells})
    seeds = sorted({c["seed"] for c in cells})
    # metrics are what varies over test sims and steps; sample and animation frames are figures' material
    baseline_suffixes = suffixes()
    metrics = sorted({v for ds in found.values() for v in ds.data_vars
                      if ds[v].dims == ("test_sim", "step") and not v.endswith(baseline_suffixes)})
    # metrics of whole test trajectories (fluidperc.metrics.trajectory_metrics): one value per test sim
    whole = sorted({v for ds in found.values() for v in ds.data_vars
                    if ds[v].dims == ("test_sim",) and not v.endswith(baseline_suffixes)})
    n_sims = max([ds.sizes["test_sim"] for ds in found.values()] or [1])
    steps = sorted({int(s) for ds in found.values() for s in ds.step.values}) or [0]
    shape = (len(tasks), len(losses), len(resolutions), len(seeds), n_sims, len(steps))
    arrays = {m: np.full(shape, np.nan) for m in metrics}
    per_sim = {m: np.full(shape[:5], np.nan) for m in whole}
    timing = np.full(shape[:4], np.nan)
    test_re = np.full((len(resolutions), n_sims), np.nan)
    # which test sim and start frame each trajectory is (SOL's rollout_starts; otherwise sim i from frame 0)
    traj_sim = np.tile(np.arange(n_sims), (len(resolutions), 1))
    traj_start = np.zeros((len(resolutions), n_sims), dtype=int)
    step_index = {s: i for i, s in enumerate(steps)}
    for c in cells:
        ds = found.get(c["label"])
        if ds is None:
            continue
        t, r, s = tasks.index(c["task"]), resolutions.index(c["resolution"]), seeds.index(c["seed"])
        cols = [step_index[int(x)] for x in ds.step.values]
        n = ds.sizes["test_sim"]
        test_re[r, :n] = ds.test_reynolds.values
        if "trajectory_sim" in ds.coords:
            traj_sim[r, :n], traj_start[r, :n] = ds.trajectory_sim.values, ds.trajectory_start.values
        per_frame = json.loads(ds.attrs["seconds_per_frame"])
        rows = [(losses.index(c["loss"]), "", per_frame.get("corrected", per_frame.get("network")))]
        for name, suffix in baselines.get(c["task"], {}).items():
            rows.append((losses.index(name), suffix, per_frame.get(name)))
        for li, suffix, seconds in rows:
            timing[t, li, r, s] = seconds if seconds is not None else np.nan
            for m in metrics:
                if m + suffix in ds:
                    arrays[m][t, li, r, s, :n][:, cols] = ds[m + suffix].values
            for m in whole:
                if m + suffix in ds:
                    per_sim[m][t, li, r, s, :n] = ds[m + suffix].values
    dims = ("task", "loss", "resolution", "seed", "test_sim", "step")
    out = xr.Dataset(
        {m: (dims, a) for m, a in arrays.items()} | {m: (dims[:5], a) for m, a in per_sim.items()}
        | {"seconds_per_frame": (dims[:4], timing)},
        coords={"task": tasks, "loss": losses, "resolution": resolutions, "seed": seeds,
                "test_sim": np.arange(n_sims), "step": steps, "test_reynolds": (("resolution", "test_sim"), test_re),
                "trajectory_sim": (("resolution", "test_sim"), traj_sim),
                "trajectory_start": (("resolution", "test_sim"), traj_start)},
    )
    out = out.merge(ladder_results(cells, found, tasks, resolutions, steps))
    trained = [c for c in cells if c["label"] in found]
    out = out.merge(validation_curves(trained, tasks, losses, resolutions, seeds))
    skipped = {label: ds.attrs.get("skipped_metrics", "{}") for label, ds in found.items()}
    out.attrs.update({"missing_cells": json.dumps(missing), "skipped_metrics": json.dumps(skipped),
                      "cells": json.dumps({c["label"]: c["eval_path"] for c in cells}),
                      "note": "the loss axis also holds each task's and pipeline's baselines (fluidperc.evaluation."
                              "pipelines.baselines_by_name): 'source' is the uncorrected low-resolution sim (SOL's; in "
                              "the combined pipeline upscaled by SR), 'high-res sim' the high-resolution simulation"})
    return str(write_atomically(out, run / RESULTS))
