"""RUN_DIR/tune.zarr in the report: the best configuration for each loss, every trial's metric at ASHA's rungs,
and every trial's validation metric over training time (ASHA's early stops show as short curves)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from fluidperc.analysis.figures import save_png  # noqa: E402
from fluidperc.analysis.tables import markdown_table
from fluidperc.analysis.bundle import has_store, open_store  # noqa: E402
from fluidperc.errors import UserError  # noqa: E402
from fluidperc.tasks.settings import TrainSettings


def load_tune(run_dir: str | Path) -> xr.Dataset:
    """Dims trial, epoch; hyper-parameters, status and final metric as coords on trial."""
    if not has_store(run_dir, "tune.zarr"):
        raise UserError(f"{Path(run_dir) / 'tune.zarr'} does not exist; run the sweep's tune stage first "
                        "(python -m hpc.launch SWEEP)")
    return open_store(run_dir, "tune.zarr").load()


def best_table(ds: xr.Dataset) -> tuple[list[str], list[list[str]]]:
    metric = ds.attrs["metric"]
    final = ds[f"final_{metric}"]
    searched = [k for k in json.loads(ds.attrs.get("searched", "[]")) if k != "loss" and k in ds.coords]
    headers = ["loss", f"best {metric}", "trial", "epochs", *searched, "trials (stopped early, errors)"]
    rows = []
    groups = sorted({str(g) for g in ds.loss_group.values})
    best_of = {g: final.where(ds.loss_group == g) for g in groups}
    order = sorted(groups, key=lambda g: float(best_of[g].min()) if bool(np.isfinite(best_of[g]).any()) else np.inf)
    for group in order:
        members = ds.loss_group == group
        n, early = int(members.sum()), int(((ds.status == "stopped early") & members).sum())
        errors = int(((ds.status == "error") & members).sum())
        values = best_of[group]
        if not bool(np.isfinite(values).any()):
            rows.append([group, "-", "-", "-", *["-"] * len(searched), f"{n} ({early}, {errors})"])
            continue
        i = int(np.nanargmin(values.values))
        trial = ds.isel(trial=i)
        label = str(trial.loss.values) if str(trial.loss.values) != group else group
        rows.append([label, f"{float(values[i]):.4g}", str(trial.trial.values), str(int(trial.epochs_run)),
                     *[_fmt(trial[k].values) for k in searched], f"{n} ({early}, {errors})"])
    return headers, rows


MAX_TRIAL_ROWS = 40
MAX_RUNG_COLUMNS = 6


def trials_table(ds: xr.Dataset) -> tuple[list[str], list[list[str]]]:
    """Every trial, best first, with its metric where trials stopped (ASHA's rungs: the epochs some trial ran to),
    so that a search over values inside one loss (mse + lambda * lsim) shows each value, not just the winner."""
    metric = ds.attrs["metric"]
    searched = [k for k in json.loads(ds.attrs.get("searched", "[]")) if k != "loss" and k in ds.coords]
    steps = int(ds.attrs.get("epoch_steps", 0))
    rungs = sorted({int(e) for e in ds.epochs_run.values if int(e) > 0})[-MAX_RUNG_COLUMNS:]
    at = [f"{metric} @ {e * steps if steps else e} {'steps' if steps else 'epochs'}" for e in rungs]
    headers = ["trial", "loss", *searched, "status", *at]
    final = ds[f"final_{metric}"].values
    order = sorted(range(ds.sizes["trial"]), key=lambda i: final[i] if np.isfinite(final[i]) else np.inf)
    rows = []
    for i in order[:MAX_TRIAL_ROWS]:
        trial = ds.isel(trial=i)
        values = [trial[metric].sel(epoch=e).values.item() for e in rungs]
        rows.append([str(trial.trial.values), str(trial.loss.values), *[_fmt(trial[k].values) for k in searched],
                     str(trial.status.values), *[f"{v:.4g}" if np.isfinite(v) else "-" for v in values]])
    return headers, rows


def _fmt(value) -> str:
    value = value.item() if hasattr(value, "item") else value
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plot_history(ds: xr.Dataset, path: Path) -> bool:
    """Validation metric against training wall time (left) and epoch (right), one line per trial."""
    metric = ds.attrs["metric"]
    if metric not in ds or "time_total_s" not in ds:
        return False
    groups = sorted({str(g) for g in ds.loss_group.values})
    colours = {g: plt.cm.tab10(i % 10) for i, g in enumerate(groups)}
    fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for i in range(ds.sizes["trial"]):
        trial = ds.isel(trial=i)
        y, t = trial[metric].values, trial.time_total_s.values
        ok = np.isfinite(y)
        if not ok.any():
            continue
        c = colours[str(trial.loss_group.values)]
        ax_t.plot(t[ok], y[ok], "-o", ms=3, color=c, alpha=0.8)
        ax_e.plot(ds.epoch.values[ok], y[ok], "-o", ms=3, color=c, alpha=0.8)
    for g in groups:
        ax_e.plot([], [], color=colours[g], label=g)
    ax_t.set(xlabel="trial training time [s]", ylabel=f"{metric} (validation sims)", yscale="log")
    ax_e.set(xlabel=f"epoch ({ds.attrs.get('epoch_steps', '?')} steps)")
    ax_e.legend(fontsize=8)
    fig.suptitle(f"Tune: {ds.sizes['trial']} trials of {ds.attrs.get('task', '')} on {ds.attrs.get('dataset', '')}")
    fig.tight_layout()
    save_png(fig, path, dpi=120)
    return True


def report_lines(run_dir: Path, out: Path) -> list[str]:
    ds = load_tune(run_dir)
    metric = ds.attrs["metric"]
    lines = ["## Hyper-parameter search (Ray Tune, ASHA)", "",
             f"{ds.sizes['trial']} trials of {ds.attrs.get('task')} on {ds.attrs.get('dataset')}, ranked by the last "
             f"{metric} each trial reported on held-out training sims (lower is better). Experiment: "
             f"`{ds.attrs.get('experiment')}`; per-trial histories: `tune.zarr`.", ""]
    headers, rows = best_table(ds)
    lines += [markdown_table(headers, rows), ""]
    headers, rows = trials_table(ds)
    more = ds.sizes["trial"] - len(rows)
    lines += ["Every trial, best first" + (f" (the best {len(rows)}; {more} more in tune.zarr)" if more else "") + ":",
              "", markdown_table(headers, rows), ""]
    if plot_history(ds, out / "tune_history.png"):
        lines += ["![validation metric over training time for every trial](tune_history.png)", ""]
    return lines


@dataclass(frozen=True)
class BestTrial:
    """What a train cell takes from a tune run for one loss: the searched settings and the loss spec of the
    trial with the best final metric, and where they came from."""

    trial: str
    loss: dict
    settings: dict
    metric: str
    value: float

    def source(self, run_dir: Path) -> str:
        return f"tune run {run_dir}, trial {self.trial} ({self.metric} {self.value:.4g})"


def best_trial(ds: xr.Dataset, label: str, name: str) -> BestTrial | None:
    """The best finished trial whose loss label is ``label``; failing that, when the search tuned weights inside
    the loss (then every trial's label differs and trials group by the loss's name), the best of that name.
    Settings are the searched hyper-parameters that are training settings (lr, batch_size, unroll, ...)."""
    metric = ds.attrs["metric"]
    final = ds[f"final_{metric}"]
    for members in (ds.loss == label, (ds.loss_group == name) & (ds.loss_group != ds.loss)):
        values = final.where(members & (ds.status != "error"))
        if bool(np.isfinite(values).any()):
            break
    else:
        return None
    i = int(np.nanargmin(values.values))
    trial = ds.isel(trial=i)
    searched = [k for k in json.loads(ds.attrs.get("searched", "[]")) if k in TrainSettings.model_fields]
    settings = {k: trial[k].values.item() for k in searched if k in ds.coords}
    return BestTrial(str(trial.trial.values), json.loads(str(trial.loss_spec.values)), settings, metric,
                     float(values[i]))
