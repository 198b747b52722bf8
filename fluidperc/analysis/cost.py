"""Accuracy against cost (SOL, the combined pipeline): every path's error against its wall time per frame, with the
plain simulation's resolution ladder as the curve to beat, and each path's speed-up at equal accuracy. How a
task's or pipeline's paths are named comes from its entry (fluidperc.evaluation.pipelines.shown_as)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from fluidperc.analysis.figures import save_png  # noqa: E402
from fluidperc.evaluation.pipelines import shown_as  # noqa: E402
from fluidperc.sim.ladder import equal_accuracy_speedup  # noqa: E402

FLOOR = 1e-7  # an error of 0 on log axes




def cost_points(ds: xr.Dataset, task: str, resolution: str, metric: str = "rel_l2") -> tuple[list, list, tuple] | None:
    """(ladder [(grid, error, seconds)] below the high grid, paths [(name, error, seconds)], the high-res sim as
    (grid, error, seconds)) for one task and grid; None without a ladder. Errors are the mean over test sims and
    steps (and seeds), times the median per frame."""
    var = f"ladder_{metric}"
    if var not in ds or task not in ds.task.values or resolution not in ds.resolution.values:
        return None
    lad = ds[var].sel(task=task, resolution=resolution).mean(["test_sim", "step"])
    secs = ds.ladder_seconds_per_frame.sel(task=task, resolution=resolution)
    grids = ds.rung_grid.sel(task=task, resolution=resolution).values
    ladder = [(str(g), float(e), float(t)) for g, e, t in zip(grids, lad.values, secs.values) if np.isfinite(t)]
    # the finest rung is the high-res sim, i.e. the reference itself (error 0): it is the cost line, not the curve
    top = ladder.pop() if ladder else None
    source_name, path_name = shown_as(task).display.cost_paths
    sub = ds.sel(task=task, resolution=resolution)
    err = sub[metric].mean(["test_sim", "step", "seed"])
    time = sub.seconds_per_frame.median("seed")
    paths = []
    for loss in sub.loss.values:
        e, t = float(err.sel(loss=loss)), float(time.sel(loss=loss))
        if np.isfinite(e) and np.isfinite(t) and str(loss) != "high-res sim":
            paths.append((source_name if str(loss) == "source" else path_name.format(loss), e, t))
    return (ladder, paths, top) if ladder else None


def plot_cost(ladder: list, paths: list, top: tuple, resolution: str, path: Path, metric: str = "rel_l2",
              what: str = "") -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.axvline(top[2] * 1e3, color="grey", linestyle="--", label=f"high-res sim {top[0].split('_')[-1]} (the reference)")
    t = [p[2] * 1e3 for p in ladder]
    e = [max(p[1], FLOOR) for p in ladder]
    ax.plot(t, e, "o-", color="black", label="plain sim, interpolated (resolution ladder)")
    for (grid, _, _), x, y in zip(ladder, t, e):
        ax.annotate(grid.split("_")[-1], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for name, err, secs in paths:
        ax.plot(secs * 1e3, max(err, FLOOR), "s" if "source" in name else "^", markersize=8, label=name)
    ax.set(xscale="log", yscale="log", xlabel="wall time per frame [ms] (same job)",
           ylabel=f"{metric} {what}".strip(), title=f"accuracy against cost, {resolution}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=120)


def cost_lines(ds: xr.Dataset, task: str, resolution: str, out: Path) -> list[str]:
    """The figure and one sentence per path: its speed-up at equal accuracy, or plainly that there is none."""
    found = cost_points(ds, task, resolution)
    if found is None:
        return []
    ladder, paths, top = found
    display = shown_as(task).display
    name = display.cost_figure.format(task=task, resolution=resolution)
    plot_cost(ladder, paths, top, resolution, out / name, what=display.cost_what)
    le, lt = np.array([p[1] for p in ladder]), np.array([p[2] for p in ladder])
    brought = display.brought
    lines = ["### Accuracy against cost", "",
             f"The plain simulation at {', '.join(p[0].split('_')[-1] for p in ladder)} (each from the same "
             f"high-resolution test frame, {brought}) is the "
             "curve a learned path has to beat: a path pays off where it lies below it. Speed-up at equal accuracy "
             "is the ladder's interpolated time (log-log) at the path's error, divided by the path's time. The "
             f"high-res sim ({top[0].split('_')[-1]}, the reference) costs {top[2] * 1e3:.3g} ms per frame.", "",
             f"![error against wall time]({name})", ""]
    for path_name, err, secs in paths:
        speedup = equal_accuracy_speedup(err, secs, le, lt)
        if speedup is None:
            where = "worse than" if err > le.max() else "better than"
            lines.append(f"- {path_name}: rel_l2 {err:.3g} at {secs * 1e3:.3g} ms per frame is {where} every rung of "
                         "the ladder; no equal-accuracy point, so no speed-up is stated.")
        elif speedup > 1:
            lines.append(f"- {path_name}: {speedup:.2f}x faster than the plain sim at equal accuracy (rel_l2 {err:.3g}).")
        else:
            lines.append(f"- {path_name}: no speed-up at this resolution: the plain sim reaches the same accuracy "
                         f"(rel_l2 {err:.3g}) {1 / speedup:.2f}x faster.")
    return lines + [""]


def plot_error_against_time(ds: xr.Dataset, task: str, resolution: str, path: Path, metric: str = "rel_l2") -> bool:
    """Every loss's (and baseline's) error against its wall time per frame for one task and grid: a learned
    correction is only worth its cost if it lies well below the baseline. Seed means of the error, seed medians
    of the time (all measured in the evaluation jobs)."""
    if metric not in ds or task not in ds.task.values or resolution not in ds.resolution.values:
        return False
    sub = ds.sel(task=task, resolution=resolution)
    err, secs = sub[metric].mean(["test_sim", "step", "seed"]), sub.seconds_per_frame.median("seed")
    points = [(str(loss), float(err.sel(loss=loss)), float(secs.sel(loss=loss))) for loss in sub.loss.values]
    points = [p for p in points if np.isfinite(p[1]) and np.isfinite(p[2])]
    if len(points) < 2:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, e, t in points:
        ax.plot(t * 1e3, max(e, FLOOR), "s" if name == "source" else "o", markersize=8, label=name)
    ax.set(xscale="log", yscale="log", xlabel="wall time per frame [ms] (evaluation job)",
           ylabel=f"{metric}, mean over test sims, steps, seeds", title=f"{task.upper()} {resolution}: error against cost")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
    return True
