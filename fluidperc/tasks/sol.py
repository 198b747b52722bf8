"""Solver-in-the-Loop: a correction network trained through m steps of the differentiable low-resolution solver.
Training compares each of the m corrected states with the reference; evaluation rolls the corrected sim and the
uncorrected source sim (the baseline, ``<metric>_source``) out from the same downsampled reference frame."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fluidperc.datasets import store
from fluidperc.datasets.frames import centred, channel_std
from fluidperc.datasets.names import grid_name, store_name
from fluidperc.devices import synchronize
from fluidperc.models import MarsMoon
from fluidperc.sim.ladder import WARM_UP_STEPS, default_rungs, run_ladder, velocity_on
from fluidperc.sim.scenes import diffusion_substeps, scene_info
from fluidperc.sim.staggered import to_centres, to_faces
from fluidperc.tasks.base import Evaluation, InferenceOptions, Task


class SolverInTheLoop(InferenceOptions, nn.Module):
    """m steps of the low-resolution differentiable PhiFlow solver, each followed by the network's correction.

    Between solver steps the state stays in the stores' staggered torch tensors; the correction (centres, network,
    back onto the faces) is plain torch (fluidperc.sim.staggered). :meth:`forward_phiflow` is the same rollout with
    PhiFlow's field resampling, kept as the reference the tests and benchmarks compare with."""

    def __init__(self, net: MarsMoon, sim, vel_std: torch.Tensor, re_std: float):
        super().__init__()
        self.net = net
        self.sim = sim
        self.register_buffer("vel_std", vel_std, persistent=False)
        self.re_std = re_std

    def correction(self, uv: torch.Tensor, reynolds: torch.Tensor) -> torch.Tensor:
        """The network's cell-centred velocity correction [B, 2, y, x] for centred velocities [B, 2, y, x]."""
        re = (reynolds / self.re_std).to(uv).view(-1, 1, 1, 1).expand(-1, 1, *uv.shape[-2:])
        return self.run_net(torch.cat([uv / self.vel_std, re], dim=1)) * self.vel_std

    def forward(self, vx: torch.Tensor, vy: torch.Tensor, marker: torch.Tensor, reynolds: torch.Tensor, steps: int,
                corrected: bool = True) -> list[dict[str, torch.Tensor]]:
        ny, nx = self.sim.ny, self.sim.nx
        out = []
        for _ in range(steps):
            t = self.sim.step_tensors(vx, vy, marker, reynolds)  # Re stays a tensor: no read back to the host
            vx, vy, marker = t["velocity_x"], t["velocity_y"], t["marker"]
            if corrected:
                cx, cy = to_faces(self.correction(to_centres(vx, vy, ny, nx), reynolds), vx.shape[-1], vy.shape[-2])
                vx, vy = vx + cx, vy + cy
            out.append({"velocity_x": vx, "velocity_y": vy, "marker": marker})
        return out

    def forward_phiflow(self, vx, vy, marker, reynolds, steps: int, corrected: bool = True) -> list[dict[str, torch.Tensor]]:
        """The rollout through PhiFlow fields (at_centers, StaggeredGrid(CenteredGrid)): the reference."""
        from phi import math
        from phi.field import CenteredGrid, StaggeredGrid

        from fluidperc.sim.simulation import State, state_from_tensors, state_tensors  # PhiFlow only where a solver runs

        state = state_from_tensors(self.sim, vx, vy, marker)
        re_list = [float(r) for r in reynolds]
        out = []
        for _ in range(steps):
            state = self.sim.step(state, re_list)
            if corrected:
                uv = state.velocity.at_centers().values.native(["sim", "vector", "y", "x"])
                c = self.correction(uv, reynolds)
                values = math.tensor(c.permute(0, 3, 2, 1), math.batch("sim"), math.spatial("x,y"),
                                     math.channel(vector="x,y"))
                grid = self.sim.grid
                corr = StaggeredGrid(CenteredGrid(values, state.velocity.extrapolation, **grid), self.sim.vbc, **grid)
                state = State(state.velocity + corr, state.marker)
            out.append(state_tensors(state))
        return out


def rollout_centred(model: nn.Module, vx: torch.Tensor, vy: torch.Tensor, marker: torch.Tensor,
                    reynolds: torch.Tensor, steps: int, ny: int, nx: int, corrected: bool = True) -> torch.Tensor:
    """SOL's rollout as what losses and metrics compare: centred velocities [sims, steps, 2, ny, nx]. The one
    place training, validation and evaluation turn a rollout into fields."""
    states = model(vx, vy, marker, reynolds, steps, corrected=corrected)
    return torch.stack([centred(s["velocity_x"], s["velocity_y"], ny, nx) for s in states], dim=1)


class SolverInTheLoopTask(Task):
    def variable(self, settings):
        return "velocity"

    def horizon(self, settings):
        return settings.unroll

    def val_horizon(self, settings):
        return settings.val_rollout or settings.unroll

    def batch(self, data, sims, frames, horizon):
        ny, nx = data.cell.resolution
        low = data.low
        refs = [centred(low.velocity_x[sims, frames + k], low.velocity_y[sims, frames + k], ny, nx)
                for k in range(1, horizon + 1)]
        return {"vx": low.velocity_x[sims, frames], "vy": low.velocity_y[sims, frames],
                "marker": low.marker[sims, frames], "reynolds": low.reynolds[sims].float(),
                "targets": torch.stack(refs, dim=1)}

    def build_net(self, cell, data):
        return MarsMoon()

    def build_model(self, cell, data, device, net=None):
        from fluidperc.sim.simulation import Simulation  # PhiFlow only where a solver runs

        net = net if net is not None else self.build_net(cell, data)  # before the solver, which draws no random numbers
        ny, nx = cell.resolution
        train_re = data.low.reynolds[data.low.train_sims]
        substeps = diffusion_substeps(scene_info(cell.scene), nx, float(data.low.reynolds.min()))
        sim = Simulation(cell.scene, ny, nx, [float(train_re[0])], substeps, device=device)
        re_std = float(train_re.double().std()) if len(train_re) > 1 else float(train_re[0])
        std = channel_std(data.low.stats, data.variable)
        return SolverInTheLoop(net, sim, std, re_std).to(device)

    def objective(self, model, batch, loss, cell):
        """Summed over the m corrected states. They go through the loss in one call, as m x batch samples (their
        mean times m is the sum over steps of the per-step means): one pass through a perceptual trunk instead of
        m, 6-15% faster for the VGG-16-based losses on CPU (BENCHMARKS.md)."""
        pred = rollout_centred(model, batch["vx"], batch["vy"], batch["marker"], batch["reynolds"],
                               cell.settings.unroll, *cell.resolution)
        return loss(pred.flatten(0, 1), batch["targets"].flatten(0, 1)) * pred.shape[1]

    def validation_outputs(self, model, batch, loss, data, cell):
        preds = rollout_centred(model, batch["vx"], batch["vy"], batch["marker"], batch["reynolds"],
                                data.val_horizon, *cell.resolution)
        target = batch["targets"]
        value = sum(loss(preds[:, k], target[:, k]) for k in range(preds.shape[1]))
        return preds.flatten(0, 1), target.flatten(0, 1), value

    @staticmethod
    def trajectories(data, settings) -> tuple[int, np.ndarray, np.ndarray]:
        """(rollout steps, the store index of each trajectory's test sim, its start frame): every test sim from
        ``rollout_starts`` frames evenly spaced from the first to the last that leaves the rollout to compare."""
        n_frames = data.low.centred.shape[1]
        n_steps = min(settings.rollout_steps, n_frames - 1)
        last = n_frames - 1 - n_steps
        starts = np.unique(np.linspace(0, last, min(settings.rollout_starts, last + 1)).round().astype(int))
        sims = np.array(data.low.test_sims)
        return n_steps, np.repeat(sims, len(starts)), np.tile(starts, len(sims))

    def evaluate(self, model, data, cell, settings, device, metrics):
        ny, nx = cell.resolution
        n_steps, traj_sims, traj_starts = self.trajectories(data, settings)
        s, f = torch.from_numpy(traj_sims), torch.from_numpy(traj_starts)
        low = data.low
        args = tuple(t.to(device) for t in (low.velocity_x[s, f], low.velocity_y[s, f], low.marker[s, f],
                                            low.reynolds[s].float())) + (n_steps,)
        timing, preds = {}, {}
        for corrected in (True, False):
            model(*args[:-1], WARM_UP_STEPS, corrected=corrected)  # the timed rollout meets no tracing
            synchronize(device)
            t0 = time.perf_counter()
            preds[corrected] = rollout_centred(model, *args, ny, nx, corrected=corrected)
            synchronize(device)
            timing["corrected" if corrected else "source"] = (time.perf_counter() - t0) / (n_steps * len(s))
            preds[corrected] = preds[corrected].cpu()
        ref = low.centred[s[:, None], f[:, None] + torch.arange(1, n_steps + 1)]  # trajectory, step, C, y, x
        results = {}
        for corrected, pred in preds.items():
            per_step = [metrics(pred[:, k], ref[:, k]) for k in range(n_steps)]
            for name in per_step[0]:
                key = name if corrected else f"{name}_source"
                results[key] = (("test_sim", "step"), np.stack([m[name] for m in per_step], axis=1))
        keep = np.linspace(0, n_steps - 1, min(settings.samples, n_steps)).round().astype(int)
        shown = np.linspace(0, n_steps - 1, min(settings.animation_frames, n_steps)).round().astype(int)

        def frames(index: np.ndarray) -> dict[str, torch.Tensor]:
            return {"prediction": preds[True][0, index], "source": preds[False][0, index], "reference": ref[0, index]}

        test = data.low.test_sims
        coords = {"trajectory_sim": ("test_sim", np.array([test.index(int(i)) for i in traj_sims])),
                  "trajectory_start": ("test_sim", traj_starts)}
        ladder = (self.ladder(model, data, cell, settings, device, n_steps, traj_sims, traj_starts)
                  if settings.ladder != [] else None)
        if ladder:
            grids = sorted(ladder, key=lambda g: g[0] * g[1])
            per_rung = [[metrics(ladder[g][0][:, k], ref[:, k]) for k in range(n_steps)] for g in grids]
            for name in per_rung[0][0]:
                results[f"ladder_{name}"] = (("rung", "test_sim", "step"),
                                             np.stack([np.stack([m[name] for m in rung], axis=1) for rung in per_rung]))
            results["ladder_seconds_per_frame"] = (("rung",), np.array([ladder[g][1] for g in grids]))
            coords.update({"rung": [grid_name(cell.scene, g) for g in grids],
                           "rung_cells": ("rung", [g[0] * g[1] for g in grids])})
        return Evaluation(results, np.arange(1, n_steps + 1), frames(keep), keep, frames(shown), shown, timing, coords,
                          trajectories=(preds[True], ref), baseline_trajectories={"_source": (preds[False], ref)})

    def ladder(self, model, data, cell, settings, device, n_steps: int, traj_sims: np.ndarray,
               traj_starts: np.ndarray) -> dict | None:
        """The plain sim at grids from the low one up to the high-resolution store's, each from the high-res test
        frame, its velocity brought onto the low grid (fluidperc.sim.ladder): what accuracy the plain
        solver buys for its time, beside the corrected sim's. None when the low store has no high-res partner."""
        from fluidperc.sim.simulation import Simulation, state_from_tensors  # PhiFlow only where a solver runs

        root = Path(cell.data_dir)
        low = store.open_group(root / cell.low_store, "r")
        factor = int(low.attrs.get("factor", 1))
        ny, nx = cell.resolution
        high_grid = (ny * factor, nx * factor)
        path = root / store_name(cell.scene, high_grid)
        if factor <= 1 or not path.exists():
            return None
        high = store.open_group(path, "r")
        kept = np.flatnonzero(low["complete"][:])
        if not np.array_equal(kept, np.flatnonzero(high["complete"][:])):
            return None  # the pair is not complete for the same sims: no common start frame
        sims = kept[traj_sims]  # each trajectory's sim in the high store, from its start frame
        first = {k: torch.from_numpy(np.stack([high[k][int(i), int(t)] for i, t in zip(sims, traj_starts)]))
                 for k in ("velocity_x", "velocity_y", "marker")}
        reynolds = [float(r) for r in data.low.reynolds[traj_sims]]
        sim = Simulation(cell.scene, *high_grid, reynolds, int(high.attrs["diffusion_substeps"]), device=device)
        start = state_from_tensors(sim, *(first[k].to(device) for k in ("velocity_x", "velocity_y", "marker")))
        rungs = settings.ladder if settings.ladder is not None else default_rungs((ny, nx), high_grid)
        rungs = [(ny, nx), *(tuple(r) for r in rungs if tuple(r) not in ((ny, nx), high_grid)), high_grid]
        return run_ladder(cell.scene, rungs, start, reynolds, float(data.low.reynolds.min()), n_steps, device,
                          velocity_on(model.sim), start_grid=high_grid)
