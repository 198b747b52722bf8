"""Tune's ResultGrid as a tidy xarray Dataset, RUN_DIR/tune.zarr: metric histories over (trial, epoch), the
sampled hyper-parameters and each trial's outcome as coordinates on ``trial``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from fluidperc.evaluation.output import write_atomically
from fluidperc.losses import parse_loss_spec
from fluidperc.tasks.cell import CellConfig
from hpc.space import domain_kind, has_domain
from hpc.spec import TuneStage

HISTORY = ("val_rel_l2", "val_mse", "val_mae", "val_vorticity_rmse", "val_spectrum_error", "val_loss", "train_loss",
           "step", "time_total_s")


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) else json.dumps(value, sort_keys=True)


def last_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else float("nan")


def tidy(grid: Any, stage: TuneStage, cell: CellConfig) -> xr.Dataset:
    searched = [k for k in stage.space if k != "loss"]
    # Continuous weights make every trial's loss label unique; then group by the loss's name instead.
    loss_space = stage.space.get("loss")
    by_name = loss_space is not None and domain_kind(loss_space) is None and has_domain(loss_space)
    trials, rows = [], []
    for result in sorted(grid, key=lambda r: Path(r.path).name):
        config = result.config or {}
        df = result.metrics_dataframe
        spec = parse_loss_spec(config.get("loss", cell.loss))
        history = {}
        if df is not None and len(df):
            df = df.sort_values("training_iteration")
            for key in HISTORY:
                if key in df:
                    history[key] = dict(zip(df["training_iteration"].astype(int), df[key].astype(float)))
        epochs_run = max(history.get("step", {0: 0}).keys()) if history else 0
        status = "error" if result.error else ("completed" if epochs_run >= stage.epochs else "stopped early")
        trial_id = Path(result.path).name
        node = str(df["node"].dropna().iloc[-1]) if df is not None and "node" in df and df["node"].notna().any() else ""
        trials.append({"trial": trial_id, "loss": spec.label, "loss_group": spec.name if by_name else spec.label,
                       "loss_spec": json.dumps(spec.model_dump(), sort_keys=True), "status": status, "node": node,
                       "epochs_run": epochs_run, **{k: _scalar(config.get(k)) for k in searched}})
        rows.append(history)
    epochs = np.arange(1, stage.epochs + 1)
    data = {}
    for key in HISTORY:
        arr = np.full((len(trials), len(epochs)), np.nan)
        for i, history in enumerate(rows):
            for epoch, value in history.get(key, {}).items():
                if 1 <= epoch <= stage.epochs:
                    arr[i, epoch - 1] = value
        if np.isfinite(arr).any():
            data[key] = (("trial", "epoch"), arr)
    coords = {"epoch": epochs, "trial": [t["trial"] for t in trials]}
    for key in trials[0] if trials else []:
        if key != "trial":
            coords[key] = ("trial", np.array([t[key] for t in trials]))
    ds = xr.Dataset(data, coords=coords)
    if stage.metric in ds:  # the last value each trial reported: what ASHA ranked it by when it stopped
        final = np.array([last_finite(row) for row in ds[stage.metric].values])
        ds.coords[f"final_{stage.metric}"] = ("trial", final)
    ds.attrs.update({"metric": stage.metric, "mode": "min", "task": cell.task, "dataset": cell.low_store,
                     "epoch_steps": stage.epoch_steps, "searched": json.dumps(["loss", *searched] if "loss" in stage.space
                                                                               else searched),
                     "space": json.dumps(stage.space, sort_keys=True), "errored_trials": sum(t["status"] == "error" for t in trials),
                     "experiment": str(Path(grid.experiment_path))})
    if stage.metric in ds and bool(np.isfinite(final).any()):
        ds.attrs["best_trial"] = str(ds.trial.values[int(np.nanargmin(final))])
    return ds


def write_results(grid: Any, stage: TuneStage, cell: CellConfig, run_dir: Path) -> Path:
    ds = tidy(grid, stage, cell)
    return write_atomically(ds, Path(run_dir) / "tune.zarr")
