"""Staggered <-> cell-centred velocity as plain torch operations on the tensors the stores keep.

Layout per axis: ``n_cells + 1`` faces on an open (zero-gradient) side, ``n_cells - 1`` interior faces between
walls (the wall faces carry zero normal velocity and are not stored). These equal PhiFlow's ``at_centers`` and
``StaggeredGrid(CenteredGrid(...))`` resampling for the study's boundaries exactly (tests/test_sim.py), without
building PhiFlow fields: Solver-in-the-Loop's correction runs every step, and the field objects cost more Python
than the arithmetic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _pad_walls(faces: torch.Tensor, n_cells: int, axis: int) -> torch.Tensor:
    """Stored faces -> all n_cells + 1 faces: walls (not stored, n_cells - 1 given) carry zero normal velocity."""
    n = faces.shape[axis]
    if n == n_cells + 1:
        return faces
    if n != n_cells - 1:
        raise ValueError(f"{n} faces for {n_cells} cells: expected {n_cells - 1} or {n_cells + 1}")
    pad = [0, 0] * (-axis - 1) + [1, 1]
    return F.pad(faces, pad)


def to_centres(vx: torch.Tensor, vy: torch.Tensor, ny: int, nx: int) -> torch.Tensor:
    """Staggered [..., y, x_face] and [..., y_face, x] -> cell-centred [..., 2, y, x] (mean of the two faces;
    differentiable)."""
    vx, vy = _pad_walls(vx, nx, -1), _pad_walls(vy, ny, -2)
    return torch.stack([0.5 * (vx[..., :-1] + vx[..., 1:]), 0.5 * (vy[..., :-1, :] + vy[..., 1:, :])], dim=-3)


def _faces(u: torch.Tensor, n_faces: int, axis: int) -> torch.Tensor:
    n = u.shape[axis]
    inner = 0.5 * (u.narrow(axis, 0, n - 1) + u.narrow(axis, 1, n - 1))
    if n_faces == n - 1:  # walls: interior faces only
        return inner
    if n_faces != n + 1:
        raise ValueError(f"{n_faces} faces for {n} cells: expected {n - 1} or {n + 1}")
    # open side (zero-gradient): the ghost cell repeats the edge cell, so the boundary face takes its value
    return torch.cat([u.narrow(axis, 0, 1), inner, u.narrow(axis, n - 1, 1)], dim=axis)


def to_faces(uv: torch.Tensor, x_faces: int, y_faces: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell-centred [..., 2, y, x] -> staggered ([..., y, x_faces], [..., y_faces, x]) with the face counts of the
    grid's boundaries (linear interpolation at the faces, as PhiFlow resamples)."""
    return _faces(uv[..., 0, :, :], x_faces, -1), _faces(uv[..., 1, :, :], y_faces, -2)
