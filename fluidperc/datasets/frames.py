"""Dataset frames as torch tensors: cell-centred velocity or marker, the staggered arrays SOL starts from,
per-sim Re, and the statistics the losses and networks normalise with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fluidperc.datasets import layout, store
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
    velocity_x: torch.Tensor  # sim, frame, y, x_face (staggered, for SOL; empty for an imported store)
    velocity_y: torch.Tensor
    marker: torch.Tensor  # sim, frame, y, x (empty when an imported store has none)
    reynolds: torch.Tensor  # sim (NaN where an imported store does not say)
    is_test: np.ndarray
    stats: dict
    dt: float
    domain: tuple[float, float] = (1.0, 1.0)  # width, height: the grid spacing metrics take (vorticity)
    split: np.ndarray | None = None  # each sim's split code (fluidperc.datasets.spec.SPLITS); None: from is_test

    def _codes(self) -> np.ndarray:
        return self.split if self.split is not None else np.where(self.is_test, 2, 0)

    @property
    def train_sims(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self._codes() == 0)]

    @property
    def val_sims(self) -> list[int]:
        """Sims declared for validation (datagen's val_reynolds x val_seeds): neither trained nor tested on."""
        return [int(i) for i in np.flatnonzero(self._codes() == 1)]

    @property
    def test_sims(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.is_test)]

    def spacing(self, ny: int, nx: int) -> tuple[float, float]:
        """(dx, dy) of an ny x nx grid over this store's domain."""
        width, height = self.domain
        return width / nx, height / ny


def load_frames(path: Path, variable: str = "velocity") -> Frames:
    """Simulated stores hold staggered velocities (SOL starts from them); imported ones (layout ``centred``)
    hold the velocity at cell centres and may hold only the velocity or only the marker."""
    group = store.open_group(path, "r")
    if "statistics" not in group.attrs:
        raise UserError(f"{path}: no statistics yet; its datagen stage has not finished (run it first)")
    done = group["complete"][:]
    keep = np.flatnonzero(done)
    if keep.size == 0:
        raise UserError(f"{path}: no complete sims")
    need = ("velocity_x", "velocity_y") if variable == "velocity" else ("marker",)
    held = [v for v in layout.VARIABLES if v in group]
    if any(v not in held for v in need):
        raise UserError(f"{path} holds {', '.join(held)}, no {variable}; train its cells on "
                        f"{'the marker (variable: marker)' if 'marker' in held else 'the velocity (variable: velocity)'}")
    ny, nx = group.attrs["resolution"]

    def read(var: str) -> torch.Tensor:
        if var not in group:
            return torch.empty(0)
        return torch.from_numpy(group[var].get_orthogonal_selection((keep, slice(None), slice(None), slice(None))))

    vx, vy, marker = read("velocity_x"), read("velocity_y"), read("marker")
    if variable != "velocity":
        fields = marker[:, :, None]
    elif group.attrs.get("layout") == "centred":
        fields = torch.stack([vx, vy], dim=2)
    else:
        fields = centred(vx, vy, ny, nx)
    return Frames(
        centred=fields.float().contiguous(),
        velocity_x=vx, velocity_y=vy, marker=marker,
        reynolds=torch.from_numpy(group["reynolds"][:][keep]),
        is_test=group["is_test"][:][keep].astype(bool), split=layout.sim_splits(group)[keep],
        stats=dict(group.attrs["statistics"]), dt=float(group.attrs["dt"]),
        domain=tuple(float(v) for v in group.attrs["domain"]),
    )


def channel_stats(stats: dict, variable: str) -> ChannelStats:
    names = ["velocity_x", "velocity_y"] if variable == "velocity" else ["marker"]
    return ChannelStats.from_attrs([stats[n] for n in names])


def channel_std(stats: dict, variable: str) -> torch.Tensor:
    s = channel_stats(stats, variable)
    return torch.tensor(s.std, dtype=torch.float32).clamp_min(1e-6).view(1, -1, 1, 1)


def channel_mean(stats: dict, variable: str) -> torch.Tensor:
    return torch.tensor(channel_stats(stats, variable).mean, dtype=torch.float32).view(1, -1, 1, 1)
