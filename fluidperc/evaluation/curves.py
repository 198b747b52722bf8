"""Validation curves for results.zarr: each cell's ``val_*`` rows of metrics.jsonl over training steps, so that a
reader can check that training had levelled off (the report's validation figure) without the run's train/ folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr


def read_validation(train_dir: str | Path) -> dict[int, dict[str, float]]:
    """step -> {val_metric: value}; a last line cut short by an interrupted job is ignored, as the trainer does."""
    path = Path(train_dir) / "metrics.jsonl"
    rows: dict[int, dict[str, float]] = {}
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        vals = {k: float(v) for k, v in row.items() if k.startswith("val_") and isinstance(v, (int, float))}
        if vals and "step" in row:
            rows[int(row["step"])] = vals
    return rows


def validation_curves(cells: list[dict], tasks: list[str], losses: list[str], resolutions: list[str],
                      seeds: list[int]) -> xr.Dataset:
    """``val_<metric>`` over (task, loss, resolution, seed, val_step) for cells with a ``train_dir``; NaN where a
    cell has no row at a step (other validate_every, unfinished training)."""
    found = {c["label"]: read_validation(c["train_dir"]) for c in cells if c.get("train_dir")}
    steps = sorted({s for rows in found.values() for s in rows})
    names = sorted({k for rows in found.values() for vals in rows.values() for k in vals})
    if not steps or not names:
        return xr.Dataset()
    shape = (len(tasks), len(losses), len(resolutions), len(seeds), len(steps))
    arrays = {n: np.full(shape, np.nan) for n in names}
    column = {s: i for i, s in enumerate(steps)}
    for c in cells:
        rows = found.get(c["label"])
        if not rows:
            continue
        at = (tasks.index(c["task"]), losses.index(c["loss"]), resolutions.index(c["resolution"]), seeds.index(c["seed"]))
        for step, vals in rows.items():
            for n, v in vals.items():
                arrays[n][(*at, column[step])] = v
    dims = ("task", "loss", "resolution", "seed", "val_step")
    return xr.Dataset({n: (dims, a) for n, a in arrays.items()}, coords={"val_step": steps})
