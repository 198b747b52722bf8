"""What a scene's physics provides to :class:`fluidperc.sim.simulation.Simulation` (one subclass per scene).

Methods import PhiFlow themselves, so that a scene's file can be imported (to register it, to validate a sweep)
without PhiFlow or torch.
"""

from __future__ import annotations

from typing import Any

from fluidperc.sim.scenes import SceneInfo


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
