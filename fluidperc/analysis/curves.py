"""Has training levelled off? The validation curves results.zarr keeps (``val_*`` over ``val_step``): a figure per
task and grid, and each loss's trend over the last 20% of training, fitted per seed, with the share of the whole
improvement that the last 20% brought."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from fluidperc.analysis.figures import save_png  # noqa: E402
from fluidperc.analysis.tables import markdown_table

TAIL = 0.2  # the share of training whose trend the table reports
LEVEL = 0.10  # levelled off: the last 20% of training brought at most this share of the whole improvement


def tail_stats(steps: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """(trend, share) of the last 20% of steps, from a least-squares line through the validation points there.
    trend: its rise over the window relative to their mean (-0.14: 14% lower at the end). share: its drop over
    the window as a share of the whole improvement since the first validation (0.05: the last fifth of training
    brought 5% of the gain; negative when the curve rose). NaN with fewer than 3 points in the window, or (share)
    when the curve never improved."""
    ok = np.isfinite(values)
    steps, values = steps[ok], values[ok]
    nan = (float("nan"), float("nan"))
    if len(steps) < 3:
        return nan
    tail = steps >= steps.max() - TAIL * steps.max()
    s, v = steps[tail].astype(float), values[tail]
    if len(s) < 3 or float(np.mean(v)) == 0:
        return nan
    slope, intercept = np.polyfit(s, v, 1)
    rise = slope * (s.max() - s.min())
    gain = values[0] - (slope * s.max() + intercept)
    return float(rise / np.mean(v)), float(-rise / gain) if gain > 1e-9 * abs(values[0]) else float("nan")


def _percent(x: float) -> str:
    """A signed percentage, with rounding noise (-1e-17) shown as +0.0%."""
    return "-" if not np.isfinite(x) else f"{(0.0 if abs(x) < 5e-4 else x):+.1%}"


def _trained(ds: xr.Dataset, metric: str, task: str, resolution: str) -> list[str]:
    sub = ds[metric].sel(task=task, resolution=resolution)
    return [str(loss) for loss in sub.loss.values if bool(np.isfinite(sub.sel(loss=loss)).any())]


def trend_rows(ds: xr.Dataset, task: str, resolution: str, metric: str = "val_rel_l2") -> list[list[str]]:
    """Per loss: the last validation value (mean over seeds), the trend over the last 20% (mean over seeds), the
    share of the improvement the last 20% brought (worst seed) and whether every seed had levelled off."""
    if metric not in ds or task not in ds.task.values:
        return []
    sub = ds[metric].sel(task=task, resolution=resolution)
    steps = sub.val_step.values
    rows = []
    for loss in _trained(ds, metric, task, resolution):
        trends, shares, finals = [], [], []
        for seed in sub.seed.values:
            v = sub.sel(loss=loss, seed=seed).values
            if np.isfinite(v).any():
                trend, share = tail_stats(steps, v)
                trends.append(trend)
                shares.append(share)
                finals.append(v[np.isfinite(v)][-1])
        mean = float(np.nanmean(trends)) if np.isfinite(trends).any() else float("nan")
        worst = float(np.nanmax(shares)) if np.isfinite(shares).any() else float("nan")
        # every seed rose over the window: more steps would not help, but the reader should see that it got worse
        level = "-" if not np.isfinite(worst) else "yes, rising" if worst < 0 else "yes" if worst <= LEVEL else "no"
        rows.append([loss, f"{np.mean(finals):.4g}", _percent(mean), _percent(worst).lstrip("+"), level])
    return rows


def plot_validation(ds: xr.Dataset, task: str, resolution: str, path: Path,
                    metrics: tuple[str, ...] = ("val_rel_l2", "val_mse")) -> bool:
    """Each loss's validation curve (mean over seeds, band from the lowest to the highest seed), the last 20%
    shaded: one panel per metric the store has, so that both levelled-off criteria can be seen, not only read."""
    if task not in ds.task.values:
        return False
    panels = [(m, _trained(ds, m, task, resolution)) for m in metrics if m in ds]
    panels = [(m, losses) for m, losses in panels if losses]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (metric, losses) in zip(axes[0], panels):
        sub = ds[metric].sel(task=task, resolution=resolution)
        steps = sub.val_step.values
        for loss in losses:
            per_seed = sub.sel(loss=loss)
            keep = np.isfinite(per_seed).any("seed").values
            line, = ax.plot(steps[keep], per_seed.mean("seed").values[keep], label=loss)
            ax.fill_between(steps[keep], per_seed.min("seed").values[keep], per_seed.max("seed").values[keep],
                            color=line.get_color(), alpha=0.2, lw=0)
        end = float(np.nanmax(np.where(np.isfinite(sub).any(["loss", "seed"]).values, steps, np.nan)))
        ax.axvspan(end * (1 - TAIL), end, color="0.9", zorder=0, label=f"last {TAIL:.0%}")
        ax.set(xlabel="training step", ylabel=metric, yscale="log", title=f"{task.upper()} {resolution}: {metric}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
    return True


def validation_lines(ds: xr.Dataset, task: str, resolution: str, out: Path) -> list[str]:
    """The report's validation figure and trend tables for one task and grid ([] without curves): on val_rel_l2,
    the criterion the study set, and on val_mse, which a near-empty frame (the plume's first) cannot dominate the
    way it dominates a relative error."""
    name = f"validation_{task}_{resolution}.png"
    rows = trend_rows(ds, task, resolution)
    if not rows or not plot_validation(ds, task, resolution, out / name):
        return []

    def headers(metric: str) -> list[str]:
        return ["loss", f"last {metric}", f"change over the last {TAIL:.0%} (mean of seeds)",
                f"share of the gain in the last {TAIL:.0%} (worst seed)", f"levelled off (share <= {LEVEL:.0%})"]

    lines = ["Validation during training (rel_l2 and, where recorded, mse on the validation samples; the figure "
             "shows both). A line is fitted per seed through "
             "the last 20% of training: the change is its rise over that window relative to its level, the share "
             "is its drop as a share of the whole improvement since the first validation.", "",
             markdown_table(headers("val_rel_l2"), rows), "", f"![validation curves]({name})", ""]
    mse_rows = trend_rows(ds, task, resolution, "val_mse")
    if mse_rows:
        lines += ["The same criterion on the validation MSE, which no single near-empty frame dominates:", "",
                  markdown_table(headers("val_mse"), mse_rows), ""]
    return lines
