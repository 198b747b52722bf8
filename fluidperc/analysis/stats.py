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
METHOD = ("Ratios are mean(loss) / mean(MSE) over seeds and test sims (each averaged over steps or frames); the 95% "
          "interval is the percentile interval of a paired bootstrap that resamples seeds and test sims with "
          "replacement, the same draw for both losses ({draws} draws, or every possible resample when there are at "
          "most {exact:,}); * marks an interval that excludes 1. With one seed no interval is given.")


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


def paired_bootstrap(values: np.ndarray, baseline: np.ndarray, level: float = 0.95, draws: int = DRAWS,
                     seed: int = 0) -> PairedRatio:
    """``values`` and ``baseline``: [seed, test_sim] arrays of one metric for a loss and for MSE, paired by
    position. NaN entries (a missing cell) are dropped pairwise by seed."""
    values, baseline = np.asarray(values, float), np.asarray(baseline, float)
    keep = np.isfinite(values).all(axis=1) & np.isfinite(baseline).all(axis=1)
    values, baseline = values[keep], baseline[keep]
    if values.size == 0 or baseline.mean() == 0:
        return PairedRatio(float("nan"))
    ratio = float(values.mean() / baseline.mean())
    n_seeds, n_sims = values.shape
    if n_seeds < 2:
        return PairedRatio(ratio)
    exact = n_seeds**n_seeds * n_sims**n_sims <= EXACT_LIMIT
    rng = None if exact else np.random.default_rng(seed)
    seeds, sims = _resamples(n_seeds, draws, rng), _resamples(n_sims, draws, rng)
    if exact:  # the crossed product: every seed resample with every sim resample
        seeds, sims = np.repeat(seeds, len(sims), axis=0), np.tile(sims, (len(seeds), 1))
    pick = (seeds[:, :, None], sims[:, None, :])
    num, den = values[pick].mean(axis=(1, 2)), baseline[pick].mean(axis=(1, 2))
    ratios = num[den != 0] / den[den != 0]
    tail = (1 - level) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return PairedRatio(ratio, float(low), float(high))


def ratios_to_mse(ds: xr.Dataset, task: str, resolution: str, metric: str, baseline: str = "mse") -> dict[str, PairedRatio]:
    """For every other loss in ``ds`` (results.zarr), the paired ratio of ``metric`` to ``baseline``'s."""
    sub = ds[metric].sel(task=task, resolution=resolution)
    per = sub.mean("step") if "step" in sub.dims else sub  # seed, test_sim (loss)
    if baseline not in per.loss.values:
        return {}
    base = per.sel(loss=baseline).transpose("seed", "test_sim").values
    out = {}
    for loss in per.loss.values:
        if str(loss) == baseline:
            continue
        values = per.sel(loss=loss).transpose("seed", "test_sim").values
        if np.isfinite(values).any():
            out[str(loss)] = paired_bootstrap(values, base)
    return out
