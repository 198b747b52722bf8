"""The three tasks as nn.Modules whose forward runs one training sample end to end (so DDP wraps one forward
per step), plus how each draws its samples and compares prediction with reference."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fluidperc.errors import UserError
from fluidperc.losses import FieldLoss
from fluidperc.models import ConvAutoencoder, MarsMoon, TransformNet
from fluidperc.train.config import CellConfig
from fluidperc.train.data import centred, channel_mean, channel_std, load_frames


class InferenceOptions:
    """For evaluation only: the network (never the solver) in bfloat16 under autocast and/or channels-last
    layout. Training always runs float32. The error each introduces is measured in tests/test_device.py and
    stated in README.md."""

    bf16 = False

    def for_inference(self, precision: str = "float32", channels_last: bool = False) -> "InferenceOptions":
        self.bf16 = precision == "bfloat16"
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        return self

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        if not self.bf16:
            return self.net(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.net(x).float()


class FrameTask(InferenceOptions, nn.Module):
    """AE and SR: normalised input frames -> network -> de-normalised prediction."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor, in_mean: torch.Tensor, in_std: torch.Tensor):
        super().__init__()
        self.net = net
        for name, t in (("mean", mean), ("std", std), ("in_mean", in_mean), ("in_std", in_std)):
            self.register_buffer(name, t, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_net((x - self.in_mean) / self.in_std) * self.std + self.mean


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


class TaskData:
    """Samples of a task: index space for the sampler, and how to build a batch from indices."""

    def __init__(self, cell: CellConfig):
        s = cell.settings
        root = Path(cell.data_dir)
        variable = "velocity" if cell.task == "sol" else s.variable
        low_path = root / cell.low_store
        self.low = load_frames(low_path, variable)
        self.high = load_frames(root / cell.high_store, variable) if cell.task == "sr" else None
        self.variable = variable
        self.cell = cell
        n_frames = self.low.centred.shape[1]
        horizon = s.unroll if cell.task == "sol" else 0
        if n_frames <= horizon:
            raise UserError(f"cell {cell.label}: {low_path} has {n_frames} frames, fewer than unroll+1 = {horizon + 1}")
        self.last_start = n_frames - 1 - horizon
        train_sims, val_sims = self.low.train_sims, self.low.test_sims or self.low.train_sims
        if s.val_sims:
            if s.val_sims >= len(train_sims):
                raise UserError(f"cell {cell.label}: val_sims {s.val_sims} leaves no training sims in {low_path} "
                                f"({len(train_sims)} training sims); expected val_sims < {len(train_sims)}")
            train_sims, val_sims = train_sims[: -s.val_sims], train_sims[-s.val_sims:]
        self.train_index = [(sim, f) for sim in train_sims for f in range(self.last_start + 1)]
        self.val_horizon = (s.val_rollout or s.unroll) if cell.task == "sol" else 0
        val_last = n_frames - 1 - self.val_horizon
        if val_last < 0:
            raise UserError(f"cell {cell.label}: {low_path} has {n_frames} frames, fewer than val_rollout+1 = "
                            f"{self.val_horizon + 1}")
        step = max(1, (val_last + 1) * len(val_sims) // s.val_samples)
        self.val_index = [(sim, f) for sim in val_sims for f in range(val_last + 1)][::step][: s.val_samples]
        if not self.train_index:
            raise UserError(f"cell {cell.label}: {low_path} has no complete training sims")

    def batch(self, index: list[tuple[int, int]], horizon: int | None = None) -> dict[str, torch.Tensor]:
        """SOL: ``horizon`` reference steps after each start frame (default: the training unroll m)."""
        sims = torch.tensor([i for i, _ in index])
        frames = torch.tensor([f for _, f in index])
        if self.cell.task == "ae":
            x = self.low.centred[sims, frames]
            return {"input": x, "target": x}
        if self.cell.task == "sr":
            return {"input": self.low.centred[sims, frames], "target": self.high.centred[sims, frames]}
        m = horizon or self.cell.settings.unroll
        ny, nx = self.cell.resolution
        refs = [centred(self.low.velocity_x[sims, frames + k], self.low.velocity_y[sims, frames + k], ny, nx)
                for k in range(1, m + 1)]
        return {"vx": self.low.velocity_x[sims, frames], "vy": self.low.velocity_y[sims, frames],
                "marker": self.low.marker[sims, frames], "reynolds": self.low.reynolds[sims].float(),
                "targets": torch.stack(refs, dim=1)}


def build_model(cell: CellConfig, data: TaskData, device: torch.device | str = "cpu") -> nn.Module:
    """Seeded by the caller; every rank builds the same initial weights, on ``device`` (SOL's solver included)."""
    stats = data.low.stats
    mean, std = channel_mean(stats, data.variable), channel_std(stats, data.variable)
    channels = mean.shape[1]
    if cell.task == "ae":
        return FrameTask(ConvAutoencoder(channels, cell.settings.compression), mean, std, mean, std).to(device)
    if cell.task == "sr":
        ratio = cell.high_resolution[0] // cell.resolution[0]
        hstats = data.high.stats
        return FrameTask(TransformNet(channels, channels, scale=ratio, width=32),
                         channel_mean(hstats, data.variable), channel_std(hstats, data.variable), mean, std).to(device)
    from fluidperc.sim.scenes import diffusion_substeps, scene_info
    from fluidperc.sim.simulation import Simulation

    ny, nx = cell.resolution
    train_re = data.low.reynolds[data.low.train_sims]
    substeps = diffusion_substeps(scene_info(cell.scene), nx, float(data.low.reynolds.min()))
    sim = Simulation(cell.scene, ny, nx, [float(train_re[0])], substeps, device=device)
    re_std = float(train_re.double().std()) if len(train_re) > 1 else float(train_re[0])
    return SolverInTheLoop(MarsMoon(), sim, std, re_std).to(device)


def rollout_centred(model: nn.Module, vx: torch.Tensor, vy: torch.Tensor, marker: torch.Tensor,
                    reynolds: torch.Tensor, steps: int, ny: int, nx: int, corrected: bool = True) -> torch.Tensor:
    """SOL's rollout as what losses and metrics compare: centred velocities [sims, steps, 2, ny, nx]. The one
    place training, validation and evaluation turn a rollout into fields."""
    states = model(vx, vy, marker, reynolds, steps, corrected=corrected)
    return torch.stack([centred(s["velocity_x"], s["velocity_y"], ny, nx) for s in states], dim=1)


def sample_loss(model: nn.Module, batch: dict[str, torch.Tensor], loss: FieldLoss, cell: CellConfig) -> torch.Tensor:
    """The training objective of one batch (SOL: summed over the m corrected states).

    SOL's m states go through the loss in one call, as m x batch samples (their mean times m is the sum over
    steps of the per-step means): one pass through a perceptual trunk instead of m, 6-15% faster for the
    VGG-16-based losses on CPU (BENCHMARKS.md)."""
    if cell.task in ("ae", "sr"):
        return loss(model(batch["input"]), batch["target"])
    pred = rollout_centred(model, batch["vx"], batch["vy"], batch["marker"], batch["reynolds"], cell.settings.unroll,
                           *cell.resolution)
    return loss(pred.flatten(0, 1), batch["targets"].flatten(0, 1)) * pred.shape[1]
