"""Paired statistics for comparing a loss with MSE: the ratio of means and its bootstrap interval.

Cells of two losses that share a seed saw the same initialisation seed and batch order, and they are evaluated
on the same test sims: their errors are paired. The bootstrap therefore resamples seeds and test sims (crossed,
each with replacement) and applies the same draw to both losses, so that what seeds and sims share cancels in
the ratio instead of widening its interval.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

DRAWS = 2000
EXACT_LIMIT = 10_000  # enumerate every resample when there are at most this many
METHOD = ("Ratios are mean(loss) / mean(MSE) over seeds and test sims (each averaged over steps or frames), with two "
          "95% intervals that both take the seed as the unit: a hierarchical bootstrap that resamples seeds, then "
          "test sims within each drawn seed, the same draw for both losses ({draws} draws, or every possible "
          "resample when there are at most {exact:,}), in brackets; and t [...], Student's t-interval over seeds of "
          "each seed's log ratio. * marks a difference only where both intervals exclude 1. With one seed no "
          "interval is given.")


@dataclass(frozen=True)
class PairedRatio:
    ratio: float
    low: float | None = None  # None: not available (one seed)
    high: float | None = None

    @property
    def excludes_one(self) -> bool:
        return self.low is not None and (self.low > 1 or self.high < 1)

    def __str__(self) -> str:
        if not math.isfinite(self.ratio):
            return "-"
        if self.low is None:
            return f"{self.ratio:.3g} (n/a: 1 seed)"
        return f"{self.ratio:.3g} [{self.low:.3g}, {self.high:.3g}]" + ("*" if self.excludes_one else "")


def _resamples(n: int, count: int, rng: np.random.Generator | None) -> np.ndarray:
    """[draws, n] indices: every n-tuple when ``rng`` is None, else ``count`` random ones."""
    if rng is None:
        return np.array(list(itertools.product(range(n), repeat=n)), dtype=int)
    return rng.integers(0, n, size=(count, n))


def _paired(values: np.ndarray, baseline: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """[seed, trajectory] arrays of a loss and the baseline, seeds without a value for both left out, and the
    ratio of their means; None when nothing is left to compare."""
    values, baseline = np.asarray(values, float), np.asarray(baseline, float)
    keep = np.isfinite(values).all(axis=1) & np.isfinite(baseline).all(axis=1)
    values, baseline = values[keep], baseline[keep]
    if values.size == 0 or baseline.mean() == 0:
        return None
    return values, baseline, float(values.mean() / baseline.mean())


def hierarchical_bootstrap(values: np.ndarray, baseline: np.ndarray, level: float = 0.95, draws: int = DRAWS,
                           seed: int = 0) -> PairedRatio:
    """The seed is the unit: resample seeds with replacement, then within each drawn seed its test trajectories
    with replacement (a fresh draw for each), the same draw for both losses; the ratio of the means. ``values``
    and ``baseline``: [seed, trajectory]. Every resample is enumerated when there are at most EXACT_LIMIT."""
    paired = _paired(values, baseline)
    if paired is None:
        return PairedRatio(float("nan"))
    values, baseline, ratio = paired
    n_seeds, n_traj = values.shape
    if n_seeds < 2:
        return PairedRatio(ratio)
    within = n_traj**n_traj
    if n_seeds**n_seeds * within**n_seeds <= EXACT_LIMIT:
        seeds = _resamples(n_seeds, 0, None)  # every seed draw, with every trajectory draw for each drawn seed
        trajs = _resamples(n_traj, 0, None)
        combos = np.array(list(itertools.product(range(len(trajs)), repeat=n_seeds)), dtype=int)
        seeds = np.repeat(seeds, len(combos), axis=0)
        traj = trajs[np.tile(combos, (len(seeds) // len(combos), 1))]  # [draw, seed slot, trajectory]
    else:
        rng = np.random.default_rng(seed)
        seeds = rng.integers(0, n_seeds, size=(draws, n_seeds))
        traj = rng.integers(0, n_traj, size=(draws, n_seeds, n_traj))
    pick = (seeds[:, :, None], traj)
    num, den = values[pick].mean(axis=(1, 2)), baseline[pick].mean(axis=(1, 2))
    ratios = num[den != 0] / den[den != 0]
    tail = (1 - level) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return PairedRatio(ratio, float(low), float(high))


def seed_t_interval(values: np.ndarray, baseline: np.ndarray, level: float = 0.95) -> PairedRatio:
    """Student's t-interval over seeds of each seed's log ratio (its mean over trajectories against the
    baseline's), exponentiated: the ratio is the geometric mean of the seeds' ratios. Needs two seeds."""
    from scipy import stats as scipy_stats  # scipy: only when a report is made

    values, baseline = np.asarray(values, float), np.asarray(baseline, float)
    keep = np.isfinite(values).all(axis=1) & np.isfinite(baseline).all(axis=1)
    v, b = values[keep].mean(axis=1), baseline[keep].mean(axis=1)
    ok = (v > 0) & (b > 0)
    logs = np.log(v[ok] / b[ok])
    if len(logs) == 0:
        return PairedRatio(float("nan"))
    centre = float(np.exp(logs.mean()))
    if len(logs) < 2:
        return PairedRatio(centre)
    half = scipy_stats.t.ppf(0.5 + level / 2, len(logs) - 1) * logs.std(ddof=1) / math.sqrt(len(logs))
    return PairedRatio(centre, float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half)))


@dataclass(frozen=True)
class Comparison:
    """A loss against the baseline on one metric: the ratio of means with its hierarchical bootstrap interval,
    and the seed-level t-interval of the log ratio. A difference counts only where both intervals exclude 1."""

    boot: PairedRatio
    t: PairedRatio
    n_seeds: int

    @property
    def ratio(self) -> float:
        return self.boot.ratio

    @property
    def excludes_one(self) -> bool:
        return self.boot.excludes_one and self.t.excludes_one

    def __str__(self) -> str:
        if not math.isfinite(self.boot.ratio):
            return "-"
        if self.boot.low is None:
            return f"{self.boot.ratio:.3g} (n/a: 1 seed)"
        t = f"t [{self.t.low:.3g}, {self.t.high:.3g}]" if self.t.low is not None else "t n/a"
        return (f"{self.boot.ratio:.3g} [{self.boot.low:.3g}, {self.boot.high:.3g}] {t}"
                + ("*" if self.excludes_one else ""))


def compare(values: np.ndarray, baseline: np.ndarray) -> Comparison:
    """Both intervals of ``values`` against ``baseline`` ([seed, trajectory], paired by position)."""
    values, baseline = np.asarray(values, float), np.asarray(baseline, float)
    seeds = int((np.isfinite(values).all(axis=1) & np.isfinite(baseline).all(axis=1)).sum())
    return Comparison(hierarchical_bootstrap(values, baseline), seed_t_interval(values, baseline), seeds)


def baseline_row(loss: str, baseline: str = "mse") -> str:
    """The row a loss is compared with: the baseline at the same train.grid point (``mae lr=0.001`` against
    ``mse lr=0.001``), or the baseline itself."""
    _, _, variant = str(loss).partition(" ")
    return f"{baseline} {variant}" if variant else baseline


def _paired_rows(ds: xr.Dataset, task: str, resolution: str, metric: str, baseline: str):
    """(loss, its baseline row, the metric per loss x seed x test sim) for every loss that has a baseline row to be
    compared with: what the ratio tables and the appendix share."""
    sub = ds[metric].sel(task=task, resolution=resolution)
    per = sub.mean("step") if "step" in sub.dims else sub  # seed, test_sim (loss)
    rows = [str(x) for x in per.loss.values]
    for loss in rows:
        base = baseline_row(loss, baseline)
        if loss != base and base in rows:
            yield loss, base, per


def ratios_to_mse(ds: xr.Dataset, task: str, resolution: str, metric: str, baseline: str = "mse") -> dict[str, Comparison]:
    """For every other loss in ``ds`` (results.zarr), ``metric`` against ``baseline``'s at the same grid point
    (:func:`compare`)."""
    out = {}
    for loss, base, per in _paired_rows(ds, task, resolution, metric, baseline):
        values = per.sel(loss=loss).transpose("seed", "test_sim").values
        if np.isfinite(values).any():
            out[loss] = compare(values, per.sel(loss=base).transpose("seed", "test_sim").values)
    return out


def ratios_per_test_sim(ds: xr.Dataset, task: str, resolution: str, metric: str,
                        baseline: str = "mse") -> dict[tuple[str, int], PairedRatio]:
    """(loss, test sim) -> that sim's ratio to ``baseline`` (the geometric mean over seeds) with the seed-level
    t-interval of its log ratio: the report's appendix, which shows whether one test sim carries a conclusion."""
    out = {}
    for loss, row, per in _paired_rows(ds, task, resolution, metric, baseline):
        for i in range(per.sizes["test_sim"]):
            values = per.sel(loss=loss).isel(test_sim=[i]).transpose("seed", "test_sim").values
            base = per.sel(loss=row).isel(test_sim=[i]).transpose("seed", "test_sim").values
            if np.isfinite(values).any() and np.isfinite(base).any():
                out[(str(loss), i)] = seed_t_interval(values, base)
    return out
