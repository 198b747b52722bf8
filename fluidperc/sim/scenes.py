"""The study's two 2-D scenes, as PhiFlow objects for one resolution.

Karman vortex street: a 100 x 200 domain open in y; a band at the bottom (y < 5) forces v = (0, 1); a marker
source at x 25..75, y 5..10; a cylinder of radius 10 at (50, 50); dt = 1.
Buoyant plume: a closed 200 x 200 box; a smoke source 100 wide x 5 tall at the bottom centre; buoyancy on the
smoke; dt = 0.1.

Viscosity follows Solver-in-the-Loop's effective-Re convention: the explicit diffusion amount per step on the grid
being stepped is alpha = dt * res_x^2 / Re, i.e. the physical viscosity nu = width^2 / Re does not depend on
resolution.
"""

from __future__ import annotations

import math as pymath
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCENES = ("karman", "plume")


@dataclass(frozen=True)
class SceneInfo:
    """Resolution-independent facts about a scene (what the dataset attrs record)."""

    name: str
    width: float
    height: float
    dt: float
    steps: int
    velocity_boundary: str
    marker_boundary: str
    obstacle: str
    characteristic_length: float  # D in U*D/nu
    characteristic_velocity: float  # U in U*D/nu
    description: str
    extra: dict[str, Any] = field(default_factory=dict)


KARMAN = SceneInfo(
    name="karman",
    width=100.0,
    height=200.0,
    dt=1.0,
    steps=1500,
    velocity_boundary="x: no-penetration walls (zero); y: open (zero-gradient); v = (0, 1) forced in y < 5",
    marker_boundary="zero",
    obstacle="cylinder radius 10 at (50, 50)",
    characteristic_length=20.0,
    characteristic_velocity=1.0,
    description="Karman vortex street behind a cylinder, inflow from the bottom",
)
PLUME = SceneInfo(
    name="plume",
    width=200.0,
    height=200.0,
    dt=0.1,
    steps=250,
    velocity_boundary="closed box (zero velocity on all walls)",
    marker_boundary="zero",
    obstacle="none",
    characteristic_length=100.0,
    characteristic_velocity=1.0,
    description="buoyancy-driven smoke plume in a closed box",
    extra={"buoyancy": 1.0, "source_rate": 1.0},
)
INFO = {"karman": KARMAN, "plume": PLUME}


def scene_info(name: str) -> SceneInfo:
    from fluidperc.errors import UserError

    if name not in INFO:
        raise UserError(f"unknown scene '{name}'; expected one of {', '.join(SCENES)}")
    return INFO[name]


def viscosity(info: SceneInfo, reynolds: float) -> float:
    """Physical viscosity nu = width^2 / Re (Solver-in-the-Loop's effective Re)."""
    return info.width**2 / reynolds


def diffusion_substeps(info: SceneInfo, nx: int, min_reynolds: float, limit: float = 0.2) -> int:
    """Explicit diffusion substeps that keep alpha = dt * nx^2 / Re per substep below ``limit`` (stable in 2-D).

    Fixed per dataset (from its smallest Re), never per batch, so a sim's frames do not depend on its neighbours.
    """
    alpha = info.dt * nx**2 / min_reynolds
    return max(1, pymath.ceil(alpha / limit))


def smooth_perturbation(seed: int, ny: int, nx: int, amplitude: float, modes: int = 4) -> np.ndarray:
    """A smooth random velocity (2, ny, nx) at cell centres: a few low Fourier modes with seeded phases."""
    rng = np.random.default_rng(seed)
    y = (np.arange(ny) + 0.5) / ny
    x = (np.arange(nx) + 0.5) / nx
    yy, xx = np.meshgrid(y, x, indexing="ij")
    out = np.zeros((2, ny, nx))
    for c in range(2):
        for _ in range(modes):
            ky, kx = rng.integers(1, 4, size=2)
            phase = rng.uniform(0, 2 * np.pi, size=2)
            out[c] += rng.normal() * np.sin(2 * np.pi * kx * xx + phase[0]) * np.sin(2 * np.pi * ky * yy + phase[1])
    return amplitude * out / max(np.abs(out).max(), 1e-12)
