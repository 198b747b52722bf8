"""Evaluate one trained cell on its dataset's held-out test sims and write ``<cell>.zarr`` (dims test_sim, step).

SOL: roll out the corrected low-resolution sim and the uncorrected source sim from the same downsampled reference
frame and compare both with the reference at every step (the source is the baseline, stored as ``<metric>_source``).
SR: upscale test frames. AE: reconstruct test frames. Perceptual metrics are computed where their weights are
present (the others are recorded as skipped, never silently dropped).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from fluidperc.datasets.names import grid_name
from fluidperc.devices import resolve as resolve_device
from fluidperc.devices import synchronize
from fluidperc.errors import UserError
from fluidperc.metrics import (
    perceptual_metric_specs,
    perceptual_metrics,
    pixel_metrics,
)
from fluidperc.evaluation.output import write_atomically
from fluidperc.evaluation.settings import EvalSettings
from fluidperc.losses import get_loss, missing_weights
from fluidperc.sim.scenes import scene_info
from fluidperc.train import CellConfig
from fluidperc.train.data import channel_stats
from fluidperc.train.tasks import TaskData, build_model, rollout_centred
from fluidperc.weights import WeightStore


def perceptual_losses(stats, variable: str, store: WeightStore) -> tuple[dict, dict]:
    """The perceptual metrics whose weights are staged, and why the others are skipped: an evaluation never
    fails on a missing weight file, it says which one to fetch."""
    losses, skipped = {}, {}
    for name, spec in perceptual_metric_specs().items():
        missing = missing_weights(spec, store)
        if missing is not None:
            skipped[name] = missing.short
            continue
        losses[name] = get_loss(spec, channel_stats(stats, variable), store)
    return losses, skipped


def frame_metrics(pred: torch.Tensor, ref: torch.Tensor, dx: float, dy: float, losses: dict) -> dict[str, np.ndarray]:
    """Every metric of one batch of frames, per frame (shared by cell evaluation and the combined pipeline)."""
    return {**pixel_metrics(pred, ref, dx, dy), **perceptual_metrics(pred, ref, losses)}


def load_trained(cell: CellConfig, train_dir: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, TaskData]:
    """The cell's trained network in eval mode on ``device``, and its data."""
    model_file = Path(train_dir) / "model.pt"
    if not model_file.exists():
        raise UserError(f"cell {cell.label}: no trained model at {model_file}; its training has not finished")
    data = TaskData(cell)
    model = build_model(cell, data, device)
    model.load_state_dict(torch.load(model_file, map_location="cpu", weights_only=True)["model"])
    return model.eval(), data


def evaluate_cell(cell_json: str, train_dir: str, out_path: str, settings_json: str = "{}") -> str:
    cell = CellConfig.model_validate_json(cell_json)
    settings = EvalSettings.model_validate_json(settings_json)
    torch.manual_seed(0)
    device = resolve_device(cell.settings.device)
    model, data = load_trained(cell, train_dir, device)
    model.for_inference(settings.precision, settings.channels_last)
    info = scene_info(cell.scene)
    target = data.high if cell.task == "sr" else data.low
    ny, nx = (cell.high_resolution if cell.task == "sr" else cell.resolution)
    dx, dy = info.width / nx, info.height / ny
    losses, skipped = perceptual_losses(target.stats, data.variable, WeightStore.from_env())
    sims = data.low.test_sims
    if not sims:
        raise UserError(f"cell {cell.label}: the dataset has no held-out test sims to evaluate on")
    coords = {"test_sim": np.arange(len(sims)), "test_reynolds": ("test_sim", data.low.reynolds[sims].numpy())}
    timing = {}
    with torch.no_grad():
        if cell.task == "sol":
            n_steps = min(settings.rollout_steps, data.low.centred.shape[1] - 1)
            s = torch.tensor(sims)
            args = tuple(t.to(device) for t in (data.low.velocity_x[s, 0], data.low.velocity_y[s, 0],
                                                  data.low.marker[s, 0], data.low.reynolds[s].float())) + (n_steps,)
            results, preds = {}, {}
            for corrected in (True, False):
                t0 = time.perf_counter()
                preds[corrected] = rollout_centred(model, *args, ny, nx, corrected=corrected)
                synchronize(device)
                timing["corrected" if corrected else "source"] = (time.perf_counter() - t0) / (n_steps * len(sims))
                preds[corrected] = preds[corrected].cpu()
            ref = data.low.centred[s, 1 : n_steps + 1]
            for corrected, pred in preds.items():
                per_step = [frame_metrics(pred[:, k], ref[:, k], dx, dy, losses) for k in range(n_steps)]
                for name in per_step[0]:
                    key = name if corrected else f"{name}_source"
                    results[key] = (("test_sim", "step"), np.stack([m[name] for m in per_step], axis=1))
            steps = np.arange(1, n_steps + 1)
            keep = np.linspace(0, n_steps - 1, min(settings.samples, n_steps)).round().astype(int)
            samples = {"sample_prediction": preds[True][0, keep], "sample_source": preds[False][0, keep],
                       "sample_reference": ref[0, keep]}
            shown = np.linspace(0, n_steps - 1, min(settings.animation_frames, n_steps)).round().astype(int)
            anim = {"anim_prediction": preds[True][0, shown], "anim_source": preds[False][0, shown],
                    "anim_reference": ref[0, shown]}
        else:
            n_frames = data.low.centred.shape[1]
            frames = np.linspace(0, n_frames - 1, min(settings.frames, n_frames)).round().astype(int)
            # every test sim's frames in one batch: one network call instead of one per sim
            s = torch.tensor(sims)
            inp = data.low.centred[s][:, frames].flatten(0, 1).to(device)
            t0 = time.perf_counter()
            out = model(inp)
            synchronize(device)
            timing["network"] = (time.perf_counter() - t0) / (len(frames) * len(sims))
            pred = out.cpu().unflatten(0, (len(sims), len(frames)))
            ref = target.centred[s][:, frames]
            per_sim = [frame_metrics(pred[i], ref[i], dx, dy, losses) for i in range(len(sims))]
            results = {name: (("test_sim", "step"), np.stack([m[name] for m in per_sim])) for name in per_sim[0]}
            steps = frames
            keep = np.arange(min(settings.samples, len(frames)))
            samples = {"sample_prediction": pred[0, keep], "sample_reference": ref[0, keep]}
            shown = np.arange(min(settings.animation_frames, len(frames)))
            anim = {"anim_prediction": pred[0, shown], "anim_reference": ref[0, shown]}
    sample_vars = {k: (("sample", "channel", "y", "x"), v.detach().numpy()) for k, v in samples.items()}
    if len(shown):
        sample_vars.update({k: (("anim", "channel", "y", "x"), v.detach().numpy()) for k, v in anim.items()})
    ds = xr.Dataset({**results, **sample_vars}, coords={**coords, "step": steps, "sample_step": ("sample", steps[keep]),
                                                        **({"anim_step": ("anim", steps[shown])} if len(shown) else {})})
    ds.attrs.update({"cell": cell.label, "task": cell.task, "loss": cell.loss_spec.label, "seed": cell.seed,
                     "scene": cell.scene,
                     "resolution": grid_name(cell.scene, cell.resolution),
                     "variable": data.variable, "seconds_per_frame": json.dumps(timing),
                     "skipped_metrics": json.dumps(skipped)})
    return str(write_atomically(ds, out_path))  # a finished evaluation appears atomically
