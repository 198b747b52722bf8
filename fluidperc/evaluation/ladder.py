"""The accuracy-vs-cost ladder: the plain simulation at resolutions between the low and the high grid, each
started from the high-resolution test frame, its marker brought onto the reference grid and compared with the
reference, timed in the same job as the corrected paths (Kochkov et al., PNAS 2021, draw error against wall time
for such a ladder; a learned path pays off where it lies below the curve)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fluidperc.devices import timed
from fluidperc.sim.scenes import diffusion_substeps, scene_info


def default_rungs(low: tuple[int, int], high: tuple[int, int], between: int = 3) -> list[tuple[int, int]]:
    """``between`` grids evenly spaced strictly between ``low`` and ``high`` (same aspect ratio, even sizes)."""
    rungs = []
    for k in range(1, between + 1):
        f = k / (between + 1)
        ny = 2 * round((low[0] + f * (high[0] - low[0])) / 2)
        nx = 2 * round((low[1] + f * (high[1] - low[1])) / 2)
        if low[0] < ny < high[0] and (ny, nx) not in rungs:
            rungs.append((ny, nx))
    return rungs


def run_ladder(scene: str, rungs: list[tuple[int, int]], start, reynolds: list[float], min_reynolds: float,
               steps: int, reference_grid: tuple[int, int], device: torch.device) -> dict[tuple[int, int], tuple]:
    """rung -> (marker on the reference grid [sims, steps, 1, H, W] on the CPU, seconds per frame). ``start``: the
    high-resolution State of the test sims' first frame."""
    from fluidperc.sim.simulation import Simulation, resampled_state, state_tensors

    info = scene_info(scene)
    out = {}
    for ny, nx in rungs:
        sim = Simulation(scene, ny, nx, reynolds, diffusion_substeps(info, nx, min_reynolds), device=device)
        first = resampled_state(start, sim)
        sim.step(sim.step(first))  # warm-up: the compiled parts trace for a resampled state and for a step's output

        def rollout():
            state, frames = first, []
            for _ in range(steps):
                state = sim.step(state)
                frames.append(state_tensors(state)["marker"])
            marker = torch.stack(frames, dim=1).float()  # sims, steps, y, x
            up = F.interpolate(marker.flatten(0, 1)[:, None], size=reference_grid, mode="bilinear", align_corners=False)
            return up.unflatten(0, marker.shape[:2])

        marker, seconds = timed(rollout, device)
        out[(ny, nx)] = (marker.cpu(), seconds / (steps * len(reynolds)))
    return out


def equal_accuracy_speedup(error: float, seconds: float, ladder_error: np.ndarray, ladder_seconds: np.ndarray) -> float | None:
    """How many times faster a path is than the plain ladder at the same error (log-log interpolation along the
    ladder, given from the coarsest grid to the finest), or None when its error lies outside the ladder's range
    (then no equal-accuracy point exists)."""
    t, e = np.log(ladder_seconds), np.log(np.maximum(ladder_error, 1e-12))
    if not (e.min() <= np.log(error) <= e.max()):
        return None
    for i in range(len(t) - 1):  # the first segment that brackets the error, walking from coarse to fine
        lo, hi = sorted((e[i], e[i + 1]))
        if lo <= np.log(error) <= hi and e[i] != e[i + 1]:
            w = (np.log(error) - e[i]) / (e[i + 1] - e[i])
            return float(np.exp(t[i] + w * (t[i + 1] - t[i])) / seconds)
    return None
