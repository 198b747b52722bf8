"""Stepping a batch of sims of one scene at one resolution (PhiFlow 3.4, torch backend).

One step: advect the marker (plus its source), diffuse the velocity explicitly, apply the scene's forcing
(Karman's inflow band, the plume's buoyancy), advect the velocity, project it divergence-free. Several (Re, seed)
sims share each step through PhiFlow's batch dimension 'sim'.

Two implementations of the same step:
- :meth:`Simulation.step` (fast): the parts before and after the projection are compiled, and the pressure comes
  from :class:`PoissonSolver`'s cached factorisation of PhiFlow's own matrix;
- :meth:`Simulation.reference_step`: plain PhiFlow ``make_incompressible`` with a warm-started iterative solve,
  as peer toolkits write it. Tests and benchmarks compare the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from phi import field as phifield
from phi import math
from phi.field import CenteredGrid, Field, StaggeredGrid
from phi.geom import Box, union
from phi.math import extrapolation
from phi.physics import advect, diffuse, fluid
from phi.physics.fluid import _accessible_extrapolation, _pressure_extrapolation, apply_boundary_conditions

from fluidperc.devices import use_for_phiflow
from fluidperc.registry import resolve
from fluidperc.sim.jit import compile_step, patch_phiml_reshape
from fluidperc.sim.pressure import PoissonSolver
from fluidperc.sim.scene_base import ScenePhysics
from fluidperc.sim.scenes import SceneInfo, scene_entry, smooth_perturbation, viscosity

PERTURBATION = 0.05  # amplitude of the seeded initial velocity perturbation (inflow speed is 1)


@dataclass
class State:
    velocity: StaggeredGrid
    marker: CenteredGrid


class Simulation:
    def __init__(self, scene: str, ny: int, nx: int, reynolds: Sequence[float], substeps: int, compiled: bool = True,
                 device: torch.device | str = "cpu"):
        """``device``: where every field of this simulation lives (PhiFlow is told before anything is built)."""
        math.use("torch")
        patch_phiml_reshape()
        self.device = torch.device(device)
        self._activate()
        entry = scene_entry(scene)
        self.info: SceneInfo = entry.info
        self.physics: ScenePhysics = resolve(entry.physics)()
        self.ny, self.nx = ny, nx
        self.reynolds = [float(r) for r in reynolds]
        self.substeps = substeps
        info = self.info
        self.bounds = Box(x=info.width, y=info.height)
        grid = dict(bounds=self.bounds, x=nx, y=ny)
        self.grid = grid
        self.vbc = self.physics.velocity_boundary()
        self.obstacles = self.physics.obstacles()
        self.fields = self.physics.constant_fields(grid, self.vbc)
        self.source = self.physics.marker_source(grid)
        self.mbc = extrapolation.ZERO
        self.pbc = _pressure_extrapolation(self.vbc)
        self._viscosities: dict[tuple[float, ...], math.Tensor] = {}
        self.nu = self.viscosities(self.reynolds)
        template = CenteredGrid(0, self.pbc, **grid)
        if self.obstacles:
            with math.NUMPY:
                accessible = Field(
                    template.geometry, ~union([o.geometry for o in self.obstacles]), _accessible_extrapolation(self.vbc)
                )
                self.hard_bcs = phifield.stagger(
                    accessible, math.minimum, self.vbc, at="face", dims=("x", "y")
                )
            self.active = accessible.with_extrapolation(extrapolation.NONE)
        else:
            self.hard_bcs, self.active = None, None
        self.solver = PoissonSolver(template, self.vbc, self.hard_bcs, self.active, self.device)
        # Empty fields whose geometry every step's values are put into: building a StaggeredGrid from scratch
        # constructs its face geometry (milliseconds of Python), with_values on a template does not.
        self.velocity_template = StaggeredGrid(0, self.vbc, **grid)
        self.marker_template = CenteredGrid(0, self.mbc, **grid)
        self._pre = compile_step(self._pre_values) if compiled else self._pre_values
        self._post = compile_step(self._post_values) if compiled else self._post_values
        self._warm = not compiled

    def _activate(self) -> None:
        """PhiFlow allocates on one default device per process: point it at ours before building anything (another
        Simulation in the same process may live elsewhere)."""
        use_for_phiflow(self.device)

    @property
    def batch_size(self) -> int:
        return len(self.reynolds)

    # --- state ----------------------------------------------------------------------------------------------
    def initial_state(self, seeds: Sequence[int]) -> State:
        """Rest (plume) or uniform inflow (Karman) plus a smooth perturbation drawn from each sim's seed."""
        if len(seeds) != self.batch_size:
            raise ValueError(f"{len(seeds)} seeds for {self.batch_size} sims")
        self._activate()
        pert = np.stack([smooth_perturbation(s, self.ny, self.nx, PERTURBATION) for s in seeds])  # sim, (x,y), y, x
        values = math.tensor(
            pert.transpose(0, 3, 2, 1).astype(np.float32), math.batch("sim"), math.spatial("x,y"), math.channel(vector="x,y")
        )
        centred = CenteredGrid(values, extrapolation.ZERO_GRADIENT, **self.grid)
        base = self.physics.base_velocity()
        velocity = StaggeredGrid(centred, self.vbc, **self.grid) + StaggeredGrid(base, self.vbc, **self.grid)
        marker = CenteredGrid(math.zeros(math.batch(sim=self.batch_size)), self.mbc, **self.grid)
        return State(self.project(velocity), marker)

    def project(self, velocity: StaggeredGrid) -> StaggeredGrid:
        """Divergence-free part of ``velocity`` through the cached direct solve (the projection every step ends
        with). PhiFlow's own make_incompressible builds its sparse matrix with int32 indices, which overflow past
        46340 cells (a 256 x 256 grid fails)."""
        velocity = apply_boundary_conditions(velocity, self.obstacles)
        div = phifield.divergence(velocity)
        if self.active is not None:
            div = div * self.active
        return self._after_projection(velocity, self.solver.solve(div))

    # --- the step -------------------------------------------------------------------------------------------
    def viscosities(self, reynolds: Sequence[float] | torch.Tensor) -> math.Tensor:
        """Per-sim viscosities. From a tensor of Re they are computed where it lives (in float64, as the Python
        floats are), so that a step reads nothing back to the host; a CUDA graph can then capture it. From floats
        they are kept per Re tuple."""
        if isinstance(reynolds, torch.Tensor):
            nu = viscosity(self.info, reynolds.to(self.device, torch.float64)).to(torch.float32)
            return math.tensor(nu, math.batch("sim"))
        key = tuple(float(r) for r in reynolds)
        if key not in self._viscosities:
            nu = torch.tensor([viscosity(self.info, r) for r in key], dtype=torch.float32, device=self.device)
            self._viscosities[key] = math.tensor(nu, math.batch("sim"))
        return self._viscosities[key]

    def _advance(self, velocity: StaggeredGrid, marker: CenteredGrid, nu) -> tuple[StaggeredGrid, CenteredGrid]:
        dt = self.info.dt
        marker = advect.semi_lagrangian(marker + self.source * dt, velocity, dt)
        velocity = diffuse.explicit(velocity, nu, dt, substeps=self.substeps)
        velocity = self.physics.force(velocity, marker, self.fields, dt)
        velocity = advect.semi_lagrangian(velocity, velocity, dt)
        return velocity, marker

    def _before_projection(self, velocity, marker, nu):
        velocity, marker = self._advance(velocity, marker, nu)
        velocity = apply_boundary_conditions(velocity, self.obstacles)
        div = phifield.divergence(velocity)
        if self.active is not None:
            div = div * self.active
        return velocity, marker, div

    def _after_projection(self, velocity, pressure):
        grad = phifield.spatial_gradient(pressure, self.vbc, at=velocity.sampled_at, order=2, scheme="green-gauss")
        if self.hard_bcs is not None:
            grad = grad * self.hard_bcs
        return (velocity - grad).with_extrapolation(self.vbc)

    # The compiled parts take and return value tensors, not fields: phiml's jit rebuilds every field it returns,
    # and a StaggeredGrid's construction (its face geometry) cost about half of each step's time.
    def _pre_values(self, velocity: math.Tensor, marker: math.Tensor, nu: math.Tensor):
        v, m, div = self._before_projection(self.velocity_template.with_values(velocity),
                                            self.marker_template.with_values(marker), nu)
        return v.values, m.values, div.values

    def _post_values(self, velocity: math.Tensor, pressure: math.Tensor) -> math.Tensor:
        return self._after_projection(self.velocity_template.with_values(velocity),
                                      self.solver.template.with_values(pressure)).values

    def step_values(self, velocity: math.Tensor, marker: math.Tensor,
                    reynolds: Sequence[float] | torch.Tensor | None = None) -> tuple[math.Tensor, math.Tensor]:
        """One step on the fields' value tensors (staggered velocity values, centred marker values)."""
        pre, post = self._pre, self._post
        if not self._warm:  # the first call runs eagerly so that the trace later sees real (non-constant) fields
            pre, post = self._pre_values, self._post_values
            self._warm = True
        self._activate()
        nu = self.nu if reynolds is None else self.viscosities(reynolds)
        velocity, marker, div = pre(velocity, marker, nu)
        pressure = self.solver.solve_values(div)
        return post(velocity, pressure), marker

    def step(self, state: State, reynolds: Sequence[float] | None = None) -> State:
        """One step of every sim; ``reynolds`` overrides the constructor's (one per sim, e.g. a training batch).
        Differentiable with respect to the state (compiled parts and the pressure solve both have gradients)."""
        velocity, marker = self.step_values(state.velocity.values, state.marker.values, reynolds)
        return State(self.velocity_template.with_values(velocity), self.marker_template.with_values(marker))

    def step_tensors(self, velocity_x: torch.Tensor, velocity_y: torch.Tensor, marker: torch.Tensor,
                     reynolds: Sequence[float] | torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One step on torch tensors laid out as the stores keep them ([sim, y, x_face], [sim, y_face, x],
        [sim, y, x]), without field objects in between: what SOL's unroll and rollouts call m times."""
        velocity, marker = self.step_values(_staggered_values(velocity_x, velocity_y), _wrap(marker), reynolds)
        return _tensors(velocity, marker)

    # --- the plain PhiFlow baseline ---------------------------------------------------------------------------
    def _iterative_solve(self, x0):
        rank = {"rank_deficiency": 0} if not self.vbc.is_flexible and not self.obstacles else {}
        return math.Solve("auto", 1e-5, 1e-5, x0=x0, **rank)

    def reference_step(self, state: State, pressure: CenteredGrid | None = None) -> tuple[State, CenteredGrid]:
        """PhiFlow's make_incompressible with an iterative solve warm-started from the last pressure."""
        self._activate()
        velocity, marker = self._advance(state.velocity, state.marker, self.nu)
        if pressure is None:
            pressure = CenteredGrid(0, self.pbc, **self.grid)
        velocity, pressure = fluid.make_incompressible(velocity, self.obstacles, self._iterative_solve(pressure))
        return State(velocity, marker), pressure


def components(state: State) -> dict[str, np.ndarray]:
    """Numpy arrays [sim, y, x...] of the stored variables: velocity_x (y, x_face), velocity_y (y_face, x), marker."""
    return {k: t.detach().cpu().numpy() for k, t in state_tensors(state).items()}


def _wrap(t: torch.Tensor) -> math.Tensor:
    return math.tensor(t.transpose(1, 2), math.batch("sim"), math.spatial("x,y"))


def _staggered_values(velocity_x: torch.Tensor, velocity_y: torch.Tensor) -> math.Tensor:
    return math.stack([_wrap(velocity_x), _wrap(velocity_y)], math.dual(vector="x,y"))


def _tensors(velocity: math.Tensor, marker: math.Tensor) -> dict[str, torch.Tensor]:
    """Indexing the value tensor, not the field: ``field.vector['x']`` builds face geometry (~30 ms a call)."""
    return {"velocity_x": velocity.vector.dual["x"].native("sim,y,x"),
            "velocity_y": velocity.vector.dual["y"].native("sim,y,x"),
            "marker": marker.native("sim,y,x")}


def state_from_tensors(sim: Simulation, velocity_x, velocity_y, marker) -> State:
    """A State from torch tensors [sim, y, x_face], [sim, y_face, x], [sim, y, x] (gradients flow through)."""
    return State(sim.velocity_template.with_values(_staggered_values(velocity_x, velocity_y)),
                 sim.marker_template.with_values(_wrap(marker)))


def state_tensors(state: State) -> dict:
    """The torch tensors of a State, laid out as the stores keep them (differentiable counterpart of components)."""
    return _tensors(state.velocity.values, state.marker.values)


def resampled_state(state: State, sim: Simulation) -> State:
    """``state`` (from another grid of the same scene) on ``sim``'s grid: PhiFlow resamples each field, then the
    velocity is projected, because resampling does not keep it divergence-free on the new grid."""
    sim._activate()
    velocity = phifield.resample(state.velocity, to=StaggeredGrid(0, sim.vbc, **sim.grid))
    marker = phifield.resample(state.marker, to=CenteredGrid(0, sim.mbc, **sim.grid))
    return State(sim.project(velocity), marker)

