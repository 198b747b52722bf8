"""Dataset frames as torch tensors: cell-centred velocity or marker, the staggered arrays SOL starts from,
per-sim Re, and the statistics the losses and networks normalise with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fluidperc.datasets import store
from fluidperc.errors import UserError
from fluidperc.losses import ChannelStats
from fluidperc.sim.staggered import to_centres


def centred(vx: torch.Tensor, vy: torch.Tensor, ny: int, nx: int) -> torch.Tensor:
    """Staggered [..., y, x_face] and [..., y_face, x] -> cell-centred [..., 2, y, x] (see fluidperc.sim.staggered)."""
    return to_centres(vx, vy, ny, nx)


@dataclass
class Frames:
    """Complete sims of one store, split into training and held-out test sims."""

    centred: torch.Tensor  # sim, frame, channel, y, x (velocity: 2 channels; marker: 1)
    velocity_x: torch.Tensor  # sim, frame, y, x_face (staggered, for SOL)
    velocity_y: torch.Tensor
    marker: torch.Tensor  # sim, frame, y, x
    reynolds: torch.Tensor  # sim
    is_test: np.ndarray
    stats: dict
    dt: float

    @property
    def train_sims(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~self.is_test)]

    @property
    def test_sims(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.is_test)]


def load_frames(path: Path, variable: str = "velocity") -> Frames:
    group = store.open_group(path, "r")
    if "statistics" not in group.attrs:
        raise UserError(f"{path}: no statistics yet; its datagen stage has not finished (run it first)")
    done = group["complete"][:]
    keep = np.flatnonzero(done)
    if keep.size == 0:
        raise UserError(f"{path}: no complete sims")
    ny, nx = group.attrs["resolution"]
    vx = group["velocity_x"].get_orthogonal_selection((keep, slice(None), slice(None), slice(None)))
    vy = group["velocity_y"].get_orthogonal_selection((keep, slice(None), slice(None), slice(None)))
    marker = group["marker"].get_orthogonal_selection((keep, slice(None), slice(None), slice(None)))
    if variable == "velocity":
        fields = centred(torch.from_numpy(vx), torch.from_numpy(vy), ny, nx)
    else:
        fields = torch.from_numpy(marker[:, :, None])
    return Frames(
        centred=fields.float().contiguous(),
        velocity_x=torch.from_numpy(vx), velocity_y=torch.from_numpy(vy), marker=torch.from_numpy(marker),
        reynolds=torch.from_numpy(group["reynolds"][:][keep]),
        is_test=group["is_test"][:][keep].astype(bool),
        stats=dict(group.attrs["statistics"]), dt=float(group.attrs["dt"]),
    )


def channel_stats(stats: dict, variable: str) -> ChannelStats:
    names = ["velocity_x", "velocity_y"] if variable == "velocity" else ["marker"]
    return ChannelStats.from_attrs([stats[n] for n in names])


def channel_std(stats: dict, variable: str) -> torch.Tensor:
    s = channel_stats(stats, variable)
    return torch.tensor(s.std, dtype=torch.float32).clamp_min(1e-6).view(1, -1, 1, 1)


def channel_mean(stats: dict, variable: str) -> torch.Tensor:
    return torch.tensor(channel_stats(stats, variable).mean, dtype=torch.float32).view(1, -1, 1, 1)
