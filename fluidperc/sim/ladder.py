"""The accuracy-vs-cost ladder: the plain simulation at resolutions between the low and the high grid, each
started from the high-resolution test frame, brought onto the reference's grid (the combined pipeline: the marker
onto the high grid; SOL: the velocity onto the low grid) and compared with the reference, timed in the same job
as the corrected paths (Kochkov et al., PNAS 2021, draw error against wall time
for such a ladder; a learned path pays off where it lies below the curve)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from fluidperc.devices import timed
from fluidperc.sim.scenes import diffusion_substeps, scene_info
from fluidperc.sim.staggered import to_centres

WARM_UP_STEPS = 3  # rollout steps run untimed before a timed one (warm_up says why three)


def warm_up(sim, state, steps: int = WARM_UP_STEPS) -> None:
    """Step a throw-away copy of a rollout's start so that the timed rollout meets no tracing: the compiled parts
    trace apart for a state built from tensors, its first step's output and the later outputs (measured: with two
    warm-up steps instead of three, the first timed steps of a 32x16 Karman sim still retraced, 0.16 against
    0.03 s per step). Through :func:`rollout_tensors`, the code the timed rollout runs."""
    rollout_tensors(sim, state, steps)


def rollout_tensors(sim, state, steps: int, reynolds: torch.Tensor | None = None) -> list[dict[str, torch.Tensor]]:
    """``steps`` steps of the plain sim from ``state`` through ``Simulation.step_tensors``: the stepping code SOL's
    unroll and its source rollout call, so that every path of a cost comparison is timed through the same code
    (the field-object ``Simulation.step`` costs 6.3 ms a 64x32 frame against 2.8-4.0 ms). ``reynolds``: one per
    sim as a tensor, as SOL passes it (default: the sim's own)."""
    from fluidperc.sim.simulation import state_tensors  # PhiFlow only where a sim runs

    t = state_tensors(state)
    re = reynolds if reynolds is not None else torch.tensor(sim.reynolds, dtype=torch.float32)
    frames = []
    for _ in range(steps):
        t = sim.step_tensors(t["velocity_x"], t["velocity_y"], t["marker"], re)
        frames.append(t)
    return frames


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
               steps: int, device: torch.device, compare, start_grid: tuple[int, int] | None = None) -> dict[tuple[int, int], tuple]:
    """rung -> (what the rollout is compared as, on the CPU, seconds per frame). ``start``: the high-resolution
    State of the test sims' first frame, on ``start_grid`` (a rung on that grid starts from it as it is, the
    others from it resampled and projected). ``compare(sim, frames)`` maps the rung's per-step state tensors
    (fluidperc.sim.simulation.state_tensors) onto the reference's grid, after the timed rollout."""
    from fluidperc.sim.simulation import (  # PhiFlow only where a rung runs
        Simulation,
        resampled_state,
        state_from_tensors,
        state_tensors,
    )

    info = scene_info(scene)
    out = {}
    for ny, nx in rungs:
        sim = Simulation(scene, ny, nx, reynolds, diffusion_substeps(info, nx, min_reynolds), device=device)
        if (ny, nx) == start_grid:
            t = state_tensors(start)
            first = state_from_tensors(sim, t["velocity_x"], t["velocity_y"], t["marker"])
        else:
            first = resampled_state(start, sim)
        re = torch.tensor(reynolds, dtype=torch.float32, device=device)
        rollout_tensors(sim, first, WARM_UP_STEPS, re)
        frames, seconds = timed(lambda: rollout_tensors(sim, first, steps, re), device)
        out[(ny, nx)] = (compare(sim, frames).cpu(), seconds / (steps * len(reynolds)))
    return out


def marker_on(grid: tuple[int, int]) -> Callable[[Any, list[dict]], torch.Tensor]:
    """The combined pipeline's comparison: each step's marker, interpolated bilinearly onto ``grid``
    [sims, steps, 1, H, W]."""
    def compare(sim, frames) -> torch.Tensor:
        marker = torch.stack([f["marker"] for f in frames], dim=1).float()  # sims, steps, y, x
        up = F.interpolate(marker.flatten(0, 1)[:, None], size=grid, mode="bilinear", align_corners=False)
        return up.unflatten(0, marker.shape[:2])
    return compare


def velocity_on(target) -> Callable[[Any, list[dict]], torch.Tensor]:
    """SOL's comparison: each step's velocity resampled by PhiFlow onto ``target``'s staggered grid (a Simulation
    of the reference's grid), then cell-centred [sims, steps, 2, y, x]. Face positions that coincide with fine
    faces take their mean, so a grid twice as fine reproduces the stores' face-average downsampling."""
    from phi import field as phifield
    from phi.field import StaggeredGrid

    from fluidperc.sim.simulation import State, state_from_tensors, state_tensors  # PhiFlow only where a rung runs

    def compare(sim, frames) -> torch.Tensor:
        target._activate()
        faces = StaggeredGrid(0, target.vbc, **target.grid)
        out = []
        for f in frames:
            state = state_from_tensors(sim, f["velocity_x"], f["velocity_y"], f["marker"])
            v = phifield.resample(state.velocity, to=faces)
            t = state_tensors(State(v, state.marker))
            out.append(to_centres(t["velocity_x"], t["velocity_y"], target.ny, target.nx))
        return torch.stack(out, dim=1).float()
    return compare


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
