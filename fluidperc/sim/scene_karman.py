"""Karman vortex street: a 100 x 200 domain, walls in x and open in y; a band at the bottom (y < 5) forces
v = (0, 1); a marker source at x 25..75, y 5..10; a cylinder of radius 10 at (50, 50); dt = 1."""

from __future__ import annotations

from fluidperc.sim.scene_base import SceneEntry, SceneInfo, ScenePhysics

INFO = SceneInfo(
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


class KarmanPhysics(ScenePhysics):
    info = INFO

    def velocity_boundary(self):
        from phi.math import extrapolation

        return extrapolation.combine_sides(x=extrapolation.ZERO, y=extrapolation.ZERO_GRADIENT)

    def obstacles(self):
        from phi.geom import Sphere
        from phi.physics._boundaries import Obstacle

        return [Obstacle(Sphere(x=50, y=50, radius=10))]

    def constant_fields(self, grid, vbc):
        from phi import math
        from phi.field import StaggeredGrid
        from phi.geom import Box

        return {"band": StaggeredGrid(Box(x=(0, self.info.width), y=(0, 5)), vbc, **grid),
                "inflow": StaggeredGrid(math.vec(x=0, y=1), vbc, **grid)}

    def marker_source(self, grid):
        from phi.field import CenteredGrid
        from phi.geom import Box

        return CenteredGrid(Box(x=(25, 75), y=(5, 10)), 0, **grid)

    def base_velocity(self):
        from phi import math

        return math.vec(x=0, y=1)

    def force(self, velocity, marker, fields, dt):
        return velocity * (1 - fields["band"]) + fields["band"] * fields["inflow"]


ENTRY = SceneEntry(INFO, "fluidperc.sim.scene_karman:KarmanPhysics", open_x=False, open_y=True,
                   default_resolutions=((128, 64), (256, 128)))
