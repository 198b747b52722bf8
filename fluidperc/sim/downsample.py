"""Downsampling that respects the staggered layout: face averages for velocity components, cell averages for
scalars. A low-resolution face coincides with every f-th high-resolution face; its value is the mean over the f
high-resolution faces that tile it (the same flux), so a uniform flow stays the same uniform flow."""

from __future__ import annotations

import numpy as np


def _face_offset(n_faces: int, n_cells: int) -> int:
    """Faces stored per axis: n_cells + 1 (open boundary, faces 0..n) or n_cells - 1 (walls, interior faces)."""
    if n_faces == n_cells + 1:
        return 0
    if n_faces == n_cells - 1:
        return 1
    raise ValueError(f"{n_faces} faces for {n_cells} cells: expected {n_cells - 1} or {n_cells + 1}")


def _select_faces(a: np.ndarray, axis: int, n_cells_hi: int, factor: int) -> np.ndarray:
    off = _face_offset(a.shape[axis], n_cells_hi)
    n_lo = n_cells_hi // factor
    n_faces_lo = n_lo + 1 if off == 0 else n_lo - 1
    idx = (np.arange(n_faces_lo) + off) * factor - off
    return np.take(a, idx, axis=axis)


def _block_mean(a: np.ndarray, axis: int, factor: int) -> np.ndarray:
    shape = list(a.shape)
    shape[axis : axis + 1] = [shape[axis] // factor, factor]
    return a.reshape(shape).mean(axis=axis + 1)


def downsample_scalar(a: np.ndarray, factor: int) -> np.ndarray:
    """[..., y, x] cell values -> cell averages over factor x factor blocks."""
    return _block_mean(_block_mean(a, a.ndim - 2, factor), a.ndim - 1, factor)


def downsample_velocity_x(u: np.ndarray, ny: int, nx: int, factor: int) -> np.ndarray:
    """[..., y, x_face] -> the low grid's x faces, each the mean of the f fine faces it covers (in y)."""
    return _block_mean(_select_faces(u, u.ndim - 1, nx, factor), u.ndim - 2, factor)


def downsample_velocity_y(v: np.ndarray, ny: int, nx: int, factor: int) -> np.ndarray:
    """[..., y_face, x] -> the low grid's y faces, each the mean of the f fine faces it covers (in x)."""
    return _block_mean(_select_faces(v, v.ndim - 2, ny, factor), v.ndim - 1, factor)


def downsample_frame(frame: dict[str, np.ndarray], ny: int, nx: int, factor: int) -> dict[str, np.ndarray]:
    return {
        "velocity_x": downsample_velocity_x(frame["velocity_x"], ny, nx, factor),
        "velocity_y": downsample_velocity_y(frame["velocity_y"], ny, nx, factor),
        "marker": downsample_scalar(frame["marker"], factor),
    }
