"""The one spelling of a dataset's name, ``<scene>_<ny>x<nx>``: store directories (``.zarr``), result
coordinates, job-group and cell labels all use it, and the report reads the scene back from it."""

from __future__ import annotations

from typing import Sequence


def grid_name(scene: str, resolution: Sequence[int]) -> str:
    ny, nx = resolution
    return f"{scene}_{int(ny)}x{int(nx)}"


def store_name(scene: str, resolution: Sequence[int]) -> str:
    return grid_name(scene, resolution) + ".zarr"


def scene_of(name: str) -> str:
    """The scene of a grid or store name (scene names themselves may contain underscores)."""
    return name.rsplit("_", 1)[0]
