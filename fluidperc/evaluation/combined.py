"""The study's closing comparison for the marker density: a cheap path (the low-resolution sim with the SOL
correction, each frame upscaled by the SR network) against the expensive one (the high-resolution sim), from the
same test frame, with the uncorrected low-resolution sim + SR as the baseline. Accuracy against the
high-resolution reference and wall time per frame of every path are measured in the same job.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from fluidperc.datasets import store
from fluidperc.datasets.frames import load_frames
from fluidperc.datasets.names import grid_name
from fluidperc.devices import resolve as resolve_device
from fluidperc.devices import timed
from fluidperc.errors import UserError
from fluidperc.evaluation.evaluate import (
    EvalSettings,
    frame_metrics,
    load_trained,
    perceptual_losses,
)
from fluidperc.evaluation.output import write_atomically
from fluidperc.evaluation.pipelines import PIPELINES
from fluidperc.sim.ladder import (
    WARM_UP_STEPS,
    default_rungs,
    marker_on,
    rollout_tensors,
    run_ladder,
)
from fluidperc.sim.scenes import scene_info
from fluidperc.tasks.cell import CellConfig
from fluidperc.weights import WeightStore

PATHS = {"corrected": "", **dict(PIPELINES["combined"].baselines)}  # path -> variable suffix (its table entry's)


def results_of(pred: torch.Tensor, ref: torch.Tensor, dx: float, dy: float, losses, n: int) -> dict[str, np.ndarray]:
    """metric -> [test_sim, step] of a rollout [sims, steps, 1, y, x] against the reference."""
    per_step = [frame_metrics(pred[:, k], ref[:, k], dx, dy, losses) for k in range(n)]
    return {name: np.stack([m[name] for m in per_step], axis=1) for name in per_step[0]}


def evaluate_combined(sol_json: str, sol_dir: str, sr_json: str, sr_dir: str, out_path: str,
                      settings_json: str = "{}") -> str:
    from fluidperc.sim.simulation import Simulation, state_from_tensors  # PhiFlow: in the job

    sol, sr = CellConfig.model_validate_json(sol_json), CellConfig.model_validate_json(sr_json)
    if sr.settings.variable != "marker" or sr.resolution != sol.resolution or sr.scene != sol.scene:
        raise UserError(f"combined pipeline: SR cell {sr.label} must upscale the marker of SOL's grid "
                        f"{sol.scene} {list(sol.resolution)}")
    settings = EvalSettings.model_validate_json(settings_json)
    torch.manual_seed(0)
    device = resolve_device(sol.settings.device)
    sol_model, sol_data = load_trained(sol, sol_dir, device)
    sr_model, sr_data = load_trained(sr, sr_dir, device)
    for model in (sol_model, sr_model):
        model.for_inference(settings.precision, settings.channels_last)
    low = sol_data.low
    high_path = Path(sr.data_dir) / sr.high_store
    high = load_frames(high_path, "velocity")
    if not (np.array_equal(low.is_test, high.is_test) and torch.equal(low.reynolds, high.reynolds)):
        raise UserError(f"combined pipeline: {sol.low_store} and {sr.high_store} do not hold the same sims")
    sims = low.test_sims
    if not sims:
        raise UserError(f"combined pipeline: {sol.low_store} has no held-out test sims")
    s = torch.tensor(sims)
    n = min(settings.rollout_steps, low.centred.shape[1] - 1)
    re = low.reynolds[s].float()
    frames = len(sims) * n
    preds, seconds = {}, {}
    with torch.no_grad():
        for path, corrected in (("corrected", True), ("source", False)):
            args = tuple(t.to(device) for t in (low.velocity_x[s, 0], low.velocity_y[s, 0], low.marker[s, 0], re))
            sol_model(*args, WARM_UP_STEPS, corrected=corrected)  # the timed rollout meets no tracing
            states, t_sim = timed(lambda: sol_model(*args, n, corrected=corrected), device)
            marker = torch.stack([st["marker"] for st in states], dim=1).float()  # sims, steps, y, x
            up, t_sr = timed(lambda: sr_model(marker.reshape(-1, 1, *marker.shape[-2:])), device)
            preds[path] = up.reshape(len(sims), n, *up.shape[1:]).cpu()
            seconds[path] = (t_sim + t_sr) / frames
        ny, nx = sr.high_resolution
        substeps = int(store.open_group(high_path, "r").attrs["diffusion_substeps"])
        sim = Simulation(sr.scene, ny, nx, [float(r) for r in high.reynolds[s]], substeps, device=device)
        start = state_from_tensors(sim, *(t.to(device) for t in (high.velocity_x[s, 0], high.velocity_y[s, 0],
                                                                  high.marker[s, 0])))
        re_high = torch.tensor([float(r) for r in high.reynolds[s]], dtype=torch.float32, device=device)
        rollout_tensors(sim, start, WARM_UP_STEPS, re_high)  # the timed rollout meets no tracing
        frames_high, t_high = timed(lambda: rollout_tensors(sim, start, n, re_high), device)
        marker = torch.stack([f["marker"] for f in frames_high], dim=1)
        preds["high-res sim"] = marker.float().cpu()[:, :, None]
        seconds["high-res sim"] = t_high / frames
        rungs = settings.ladder if settings.ladder is not None else default_rungs(tuple(sol.resolution), (ny, nx))
        rungs = [tuple(sol.resolution), *(tuple(r) for r in rungs if tuple(r) not in (tuple(sol.resolution), (ny, nx)))]
        ladder = run_ladder(sr.scene, rungs, start, [float(r) for r in high.reynolds[s]],
                            float(high.reynolds.min()), n, device, marker_on((ny, nx)))
    ref = high.marker[s, 1 : n + 1].float()[:, :, None]  # sims, steps, 1, y, x
    info = scene_info(sr.scene)
    dx, dy = info.width / nx, info.height / ny
    losses, skipped = perceptual_losses(sr_data.high.stats, "marker", WeightStore.from_env())
    results = {}
    for path, suffix in PATHS.items():
        for name, values in results_of(preds[path], ref, dx, dy, losses, n).items():
            results[name + suffix] = (("test_sim", "step"), values)
    # the ladder, its top being the high-res sim itself (same start, same steps)
    ladder[(ny, nx)] = (preds["high-res sim"], seconds["high-res sim"])
    grids = sorted(ladder, key=lambda g: g[0] * g[1])
    per_rung = [results_of(ladder[g][0], ref, dx, dy, losses, n) for g in grids]
    for name in per_rung[0]:
        results[f"ladder_{name}"] = (("rung", "test_sim", "step"), np.stack([r[name] for r in per_rung]))
    results["ladder_seconds_per_frame"] = (("rung",), np.array([ladder[g][1] for g in grids]))
    keep = np.linspace(0, n - 1, min(settings.samples, n)).round().astype(int)
    samples = {f"sample_{k}": (("sample", "channel", "y", "x"), preds[p][0, keep].numpy())
               for k, p in (("prediction", "corrected"), ("source", "source"), ("highres", "high-res sim"))}
    samples["sample_reference"] = (("sample", "channel", "y", "x"), ref[0, keep].numpy())
    shown = np.linspace(0, n - 1, min(settings.animation_frames, n)).round().astype(int)
    if len(shown):  # the report's GIF: the same paths, animated over the first test sim
        samples.update({f"anim_{k}": (("anim", "channel", "y", "x"), preds[p][0, shown].numpy())
                        for k, p in (("prediction", "corrected"), ("source", "source"), ("highres", "high-res sim"))})
        samples["anim_reference"] = (("anim", "channel", "y", "x"), ref[0, shown].numpy())
    ds = xr.Dataset({**results, **samples},
                    coords={**({"anim_step": ("anim", shown + 1)} if len(shown) else {}),"test_sim": np.arange(len(sims)), "test_reynolds": ("test_sim", low.reynolds[s].numpy()),
                            "step": np.arange(1, n + 1), "sample_step": ("sample", keep + 1),
                            "rung": [grid_name(sr.scene, g) for g in grids],
                            "rung_cells": ("rung", [g[0] * g[1] for g in grids])})
    ds.attrs.update({"cell": f"combined {sol.label} + {sr.label}", "task": "combined", "loss": sol.loss_spec.label,
                     "seed": sol.seed, "variable": "marker",
                     "resolution": grid_name(sol.scene, sol.resolution),
                     "seconds_per_frame": json.dumps(seconds), "skipped_metrics": json.dumps(skipped),
                     "paths": "corrected: low-res sim + SOL + SR; source: low-res sim + SR; high-res sim"})
    return str(write_atomically(ds, out_path))  # a finished evaluation appears atomically
