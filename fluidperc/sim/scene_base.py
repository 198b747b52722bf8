"""What a scene is: its resolution-independent facts (:class:`SceneInfo`), its entry in the table of scenes
(:class:`SceneEntry`), and what its physics provides to :class:`fluidperc.sim.simulation.Simulation`
(:class:`ScenePhysics`, one subclass per scene).

Methods import PhiFlow themselves, so that a scene's file can be imported (to register it, to validate a sweep)
without PhiFlow or torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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


@dataclass(frozen=True)
class SceneEntry:
    """``physics``: ``"module:Class"`` of the scene's ScenePhysics. ``open_x``/``open_y``: whether the velocity
    leaves through that pair of sides (zero-gradient: n + 1 stored faces) or meets walls (n - 1 interior faces)."""

    info: SceneInfo
    physics: str
    open_x: bool
    open_y: bool
    default_resolutions: tuple[tuple[int, int], ...] = ()


class ScenePhysics:
    info: SceneInfo

    def velocity_boundary(self) -> Any:
        """PhiFlow extrapolation of the staggered velocity (its open sides must match the SceneEntry's)."""
        raise NotImplementedError

    def obstacles(self) -> list[Any]:
        """PhiFlow Obstacles inside the domain (none by default)."""
        return []

    def constant_fields(self, grid: dict[str, Any], vbc: Any) -> dict[str, Any]:
        """Fields built once per resolution and reused every step (forcing masks and the like)."""
        return {}

    def marker_source(self, grid: dict[str, Any]) -> Any:
        """Marker added per time unit (a CenteredGrid)."""
        raise NotImplementedError

    def base_velocity(self) -> Any:
        """The initial velocity before the seeded perturbation (a PhiFlow vector)."""
        from phi import math

        return math.vec(x=0, y=0)

    def force(self, velocity: Any, marker: Any, fields: dict[str, Any], dt: float) -> Any:
        """The velocity after this step's forcing (after diffusion, before self-advection)."""
        return velocity
