"""Buoyant plume: a closed 200 x 200 box; a smoke source 100 wide x 5 tall at the bottom centre; buoyancy on the
smoke; dt = 0.1."""

from __future__ import annotations

from fluidperc.sim.scene_base import SceneEntry, SceneInfo, ScenePhysics

INFO = SceneInfo(
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


class PlumePhysics(ScenePhysics):
    info = INFO

    def velocity_boundary(self):
        from phi.math import extrapolation

        return extrapolation.ZERO

    def marker_source(self, grid):
        from phi.field import CenteredGrid
        from phi.geom import Box

        return CenteredGrid(Box(x=(50, 150), y=(0, 5)), 0, **grid) * self.info.extra["source_rate"]

    def force(self, velocity, marker, fields, dt):
        from phi import math

        buoyancy = (marker * math.vec(x=0, y=self.info.extra["buoyancy"])).at(velocity)
        return velocity + buoyancy * dt


ENTRY = SceneEntry(INFO, "fluidperc.sim.scene_plume:PlumePhysics", open_x=False, open_y=False,
                   default_resolutions=((128, 128), (256, 256)))
