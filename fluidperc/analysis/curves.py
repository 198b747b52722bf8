"""Has training levelled off? The validation curves results.zarr keeps (``val_*`` over ``val_step``): a figure per
task and grid, and each loss's trend over the last 20% of training, fitted per seed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

TAIL = 0.2  # the share of training whose trend the table reports
FLAT = 0.05  # |trend| below this (5% of the level) counts as flat


def tail_trend(steps: np.ndarray, values: np.ndarray) -> float:
    """Relative change over the last 20% of steps: a least-squares line through the validation points there,
    its rise over the window divided by their mean. NaN with fewer than 3 points."""
    ok = np.isfinite(values)
    steps, values = steps[ok], values[ok]
    if len(steps) < 3:
        return float("nan")
    tail = steps >= steps.max() - TAIL * steps.max()
    s, v = steps[tail], values[tail]
    if len(s) < 3 or float(np.mean(v)) == 0:
        return float("nan")
    slope = np.polyfit(s.astype(float), v, 1)[0]
    return float(slope * (s.max() - s.min()) / np.mean(v))


def _percent(x: float) -> str:
    """A signed percentage, with rounding noise (-1e-17) shown as +0.0%."""
    return "-" if not np.isfinite(x) else f"{(0.0 if abs(x) < 5e-4 else x):+.1%}"


def _trained(ds: xr.Dataset, metric: str, task: str, resolution: str) -> list[str]:
    sub = ds[metric].sel(task=task, resolution=resolution)
    return [str(loss) for loss in sub.loss.values if bool(np.isfinite(sub.sel(loss=loss)).any())]


def trend_rows(ds: xr.Dataset, task: str, resolution: str, metric: str = "val_rel_l2") -> list[list[str]]:
    """Per loss: the last validation value (mean over seeds), the trend over the last 20% (mean and worst seed)."""
    if metric not in ds or task not in ds.task.values:
        return []
    sub = ds[metric].sel(task=task, resolution=resolution)
    steps = sub.val_step.values
    rows = []
    for loss in _trained(ds, metric, task, resolution):
        trends, finals = [], []
        for seed in sub.seed.values:
            v = sub.sel(loss=loss, seed=seed).values
            if np.isfinite(v).any():
                trends.append(tail_trend(steps, v))
                finals.append(v[np.isfinite(v)][-1])
        worst = max(trends, key=lambda t: abs(t) if np.isfinite(t) else -1.0)
        mean = float(np.nanmean(trends)) if np.isfinite(trends).any() else float("nan")
        flat = "yes" if np.isfinite(worst) and abs(worst) <= FLAT else "no" if np.isfinite(worst) else "-"
        rows.append([loss, f"{np.mean(finals):.4g}", _percent(mean), _percent(worst), flat])
    return rows


def plot_validation(ds: xr.Dataset, task: str, resolution: str, path: Path, metric: str = "val_rel_l2") -> bool:
    """Each loss's validation curve (mean over seeds, band from the lowest to the highest seed), the last 20%
    shaded."""
    if metric not in ds or task not in ds.task.values:
        return False
    losses = _trained(ds, metric, task, resolution)
    if not losses:
        return False
    sub = ds[metric].sel(task=task, resolution=resolution)
    steps = sub.val_step.values
    fig, ax = plt.subplots(figsize=(6, 4))
    for loss in losses:
        per_seed = sub.sel(loss=loss)
        keep = np.isfinite(per_seed).any("seed").values
        mean = per_seed.mean("seed").values[keep]
        line, = ax.plot(steps[keep], mean, label=loss)
        ax.fill_between(steps[keep], per_seed.min("seed").values[keep], per_seed.max("seed").values[keep],
                        color=line.get_color(), alpha=0.2, lw=0)
    end = float(np.nanmax(np.where(np.isfinite(sub).any(["loss", "seed"]).values, steps, np.nan)))
    ax.axvspan(end * (1 - TAIL), end, color="0.9", zorder=0, label=f"last {TAIL:.0%}")
    ax.set(xlabel="training step", ylabel=metric, yscale="log", title=f"{task.upper()} {resolution}: validation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def validation_lines(ds: xr.Dataset, task: str, resolution: str, out: Path) -> list[str]:
    """The report's validation figure and trend table for one task and grid ([] without curves)."""
    name = f"validation_{task}_{resolution}.png"
    rows = trend_rows(ds, task, resolution)
    if not rows or not plot_validation(ds, task, resolution, out / name):
        return []
    from fluidperc.analysis.tables import markdown_table

    headers = ["loss", "last val_rel_l2", f"trend over the last {TAIL:.0%} (mean of seeds)", "worst seed",
               f"flat (|trend| <= {FLAT:.0%})"]
    return ["Validation during training (rel_l2 on the validation samples; the trend is a line fitted per seed "
            "through the last 20% of training, its rise over that window relative to its level):", "",
            markdown_table(headers, rows), "", f"![validation curves]({name})", ""]
