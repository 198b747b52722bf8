"""Solver-in-the-Loop: a correction network trained through m steps of the differentiable low-resolution solver.
Training compares each of the m corrected states with the reference; evaluation rolls the corrected sim and the
uncorrected source sim (the baseline, ``<metric>_source``) out from the same downsampled reference frame."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from fluidperc.devices import synchronize
from fluidperc.models import MarsMoon
from fluidperc.tasks.base import Evaluation, InferenceOptions, Task
from fluidperc.train.data import centred, channel_std


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
        from fluidperc.sim.simulation import state_from_tensors, state_tensors
        from fluidperc.sim.staggered import to_centres, to_faces

        ny, nx = self.sim.ny, self.sim.nx
        re_list = [float(r) for r in reynolds]
        out = []
        for _ in range(steps):
            t = state_tensors(self.sim.step(state_from_tensors(self.sim, vx, vy, marker), re_list))
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

        from fluidperc.sim.simulation import State, state_from_tensors, state_tensors

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

    def build_model(self, cell, data, device):
        from fluidperc.sim.scenes import diffusion_substeps, scene_info
        from fluidperc.sim.simulation import Simulation

        ny, nx = cell.resolution
        train_re = data.low.reynolds[data.low.train_sims]
        substeps = diffusion_substeps(scene_info(cell.scene), nx, float(data.low.reynolds.min()))
        sim = Simulation(cell.scene, ny, nx, [float(train_re[0])], substeps, device=device)
        re_std = float(train_re.double().std()) if len(train_re) > 1 else float(train_re[0])
        std = channel_std(data.low.stats, data.variable)
        return SolverInTheLoop(MarsMoon(), sim, std, re_std).to(device)

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

    def evaluate(self, model, data, cell, settings, device, metrics):
        ny, nx = cell.resolution
        n_steps = min(settings.rollout_steps, data.low.centred.shape[1] - 1)
        s = torch.tensor(data.low.test_sims)
        low = data.low
        args = tuple(t.to(device) for t in (low.velocity_x[s, 0], low.velocity_y[s, 0], low.marker[s, 0],
                                            low.reynolds[s].float())) + (n_steps,)
        timing, preds = {}, {}
        for corrected in (True, False):
            t0 = time.perf_counter()
            preds[corrected] = rollout_centred(model, *args, ny, nx, corrected=corrected)
            synchronize(device)
            timing["corrected" if corrected else "source"] = (time.perf_counter() - t0) / (n_steps * len(s))
            preds[corrected] = preds[corrected].cpu()
        ref = low.centred[s, 1 : n_steps + 1]
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

        return Evaluation(results, np.arange(1, n_steps + 1), frames(keep), keep, frames(shown), shown, timing)
