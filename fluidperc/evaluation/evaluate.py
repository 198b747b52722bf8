"""Evaluate one trained cell on its dataset's held-out test sims and write ``<cell>.zarr`` (dims test_sim, step).

What runs is the task's (fluidperc.tasks: SOL rolls out the corrected and the uncorrected source sim from the
same reference frame, SR upscales test frames, AE reconstructs them); this module turns it into the cell's
results with every metric on the task's target grid. Perceptual metrics are computed where their weights are
present (the others are recorded as skipped, never silently dropped).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from fluidperc.datasets.frames import channel_stats
from fluidperc.datasets.names import grid_name
from fluidperc.devices import resolve as resolve_device
from fluidperc.errors import UserError
from fluidperc.evaluation.output import write_atomically
from fluidperc.losses import get_loss, missing_weights
from fluidperc.metrics import (
    band_rmse,
    perceptual_metric_specs,
    perceptual_metrics,
    pixel_metrics,
    trajectory_metrics,
)
from fluidperc.tasks import task_entry
from fluidperc.tasks.base import TaskData, build_model
from fluidperc.tasks.cell import CellConfig
from fluidperc.tasks.settings import EvalSettings
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
    return {**pixel_metrics(pred, ref, dx, dy), **band_rmse(pred, ref), **perceptual_metrics(pred, ref, losses)}


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
    dx, dy = data.low.spacing(*data.task.target_grid(cell))
    losses, skipped = perceptual_losses((data.high or data.low).stats, data.variable, WeightStore.from_env())
    sims = data.low.test_sims
    if not sims:
        raise UserError(f"cell {cell.label}: the dataset has no held-out test sims to evaluate on")
    coords = {"test_sim": np.arange(len(sims)), "test_reynolds": ("test_sim", data.low.reynolds[sims].numpy())}
    with torch.no_grad():
        ev = data.task.evaluate(model, data, cell, settings, device, lambda p, r: frame_metrics(p, r, dx, dy, losses))
    if "trajectory_sim" in ev.coords:  # several trajectories per test sim (SOL's rollout_starts)
        which = np.asarray(ev.coords["trajectory_sim"][1])
        coords = {"test_sim": np.arange(len(which)),
                  "test_reynolds": ("test_sim", data.low.reynolds[sims].numpy()[which])}
    rollout = task_entry(cell.task).rollout
    if ev.trajectories is not None:
        ev.results.update(trajectory_metrics(*ev.trajectories, dx, dy, rollout))
    for suffix, (pred, ref) in ev.baseline_trajectories.items():
        ev.results.update({name + suffix: v for name, v in trajectory_metrics(pred, ref, dx, dy, rollout).items()})
    steps, keep, shown = ev.steps, ev.sample_index, ev.anim_index
    sample_vars = {f"sample_{k}": (("sample", "channel", "y", "x"), v.detach().numpy()) for k, v in ev.samples.items()}
    if len(shown):
        sample_vars.update({f"anim_{k}": (("anim", "channel", "y", "x"), v.detach().numpy()) for k, v in ev.anim.items()})
    ds = xr.Dataset({**ev.results, **sample_vars}, coords={**coords, **ev.coords, "step": steps,
                                                           "sample_step": ("sample", steps[keep]),
                                                           **({"anim_step": ("anim", steps[shown])} if len(shown) else {})})
    ds.attrs.update({"cell": cell.label, "task": cell.task, "loss": cell.loss_row, "seed": cell.seed,
                     "scene": cell.scene, "imported": int(cell.imported), "domain": list(data.low.domain),
                     "resolution": grid_name(cell.scene, cell.resolution),
                     "variable": data.variable, "seconds_per_frame": json.dumps(ev.timing),
                     "skipped_metrics": json.dumps(skipped)})
    return str(write_atomically(ds, out_path))  # a finished evaluation appears atomically
