"""The table of scenes: what a sweep may name, each scene's resolution-independent facts (SceneInfo, light),
where its physics lives (a class loaded only to simulate), and which sides are open.

The study's two scenes are one file each: ``scene_karman.py`` (Karman vortex street) and ``scene_plume.py``
(buoyant plume). A new scene is one file with a :class:`SceneInfo`, a physics class (see
:class:`fluidperc.sim.scene_base.ScenePhysics`) and its ``ENTRY``, plus one line in ``_builtin`` below; code
outside fluidperc calls :func:`register_scene` with its entry from a module named under a sweep's ``plugins:`` or an entry point in the group
``fluidperc.scenes``.

Viscosity follows Solver-in-the-Loop's effective-Re convention: the explicit diffusion amount per step on the grid
being stepped is alpha = dt * res_x^2 / Re, i.e. the physical viscosity nu = width^2 / Re does not depend on
resolution.
"""

from __future__ import annotations

import math as pymath

import numpy as np

from fluidperc.registry import Registry
from fluidperc.sim import scene_karman, scene_plume
from fluidperc.sim.scene_base import SceneEntry, SceneInfo

__all__ = ["SCENES", "SceneEntry", "SceneInfo", "check_scene", "diffusion_substeps", "register_scene", "scene_entry",
           "scene_info", "scenes", "smooth_perturbation", "viscosity"]


def _builtin() -> None:
    for entry in (scene_karman.ENTRY, scene_plume.ENTRY):
        register_scene(entry)


SCENES: Registry[SceneEntry] = Registry("scene", "fluidperc.scenes", key=lambda e: e.info.name,
                                        describe=lambda e: e.physics, builtin=_builtin)
register_scene = SCENES.register
scenes = SCENES.table
scene_entry = SCENES.entry
check_scene = SCENES.check


def scene_info(name: str) -> SceneInfo:
    return scene_entry(name).info


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
