"""Analysis of a run: ``load(RUN_DIR)`` gives the results as an xarray Dataset; ``python -m fluidperc.analysis
RUN_DIR`` writes RUN_DIR/report/ (a Markdown report with tables, and PNG figures). A published bundle
(fluidperc.analysis.bundle) stands wherever a run directory does."""

from __future__ import annotations

import json
from pathlib import Path

import xarray as xr

from fluidperc.analysis.bundle import has_store, open_store
from fluidperc.errors import UserError


def load(run_dir: str | Path) -> xr.Dataset:
    """results.zarr (of a run directory or a bundle) with dims task, loss, resolution, seed, test_sim, step;
    attrs["missing_cells"] is a dict."""
    if not has_store(run_dir, "results.zarr"):
        raise UserError(f"{Path(run_dir) / 'results.zarr'} does not exist; run the sweep's evaluate stage first "
                        "(python -m hpc.launch SWEEP)")
    ds = open_store(run_dir, "results.zarr").load()
    for key in ("missing_cells", "skipped_metrics", "cells"):
        if isinstance(ds.attrs.get(key), str):
            ds.attrs[key] = json.loads(ds.attrs[key])
    return ds
