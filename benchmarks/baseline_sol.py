"""The SOL unroll as fluidperc ran it before issue 15's work, kept as the benchmarks' baseline: PhiFlow fields
throughout. Each step builds its state as new fields, runs the compiled parts of the step on fields (phiml's jit
rebuilds every field it returns), corrects through PhiFlow's resampling (``at_centers``,
``StaggeredGrid(CenteredGrid)``) and reads the tensors back by indexing the field (``velocity.vector['x']``).
Same arithmetic as ``SolverInTheLoop.forward`` (tests/test_sim.py checks the steps agree); only the Python
around it differs."""

from __future__ import annotations

import torch

from fluidperc.sim.jit import compile_step


class FieldSteps:
    """Compiled field-in, field-out parts of one Simulation's step (the first call runs eagerly, as the
    simulation's own does, so that the trace sees real fields)."""

    def __init__(self, sim):
        self.sim = sim
        self.pre = compile_step(sim._before_projection)
        self.post = compile_step(sim._after_projection)
        self.warm = False

    def step(self, state, reynolds):
        from fluidperc.sim.simulation import State

        sim = self.sim
        pre, post = (self.pre, self.post) if self.warm else (sim._before_projection, sim._after_projection)
        self.warm = True
        sim._activate()
        velocity, marker, div = pre(state.velocity, state.marker, sim.viscosities(reynolds))
        return State(post(velocity, sim.solver.solve(div)), marker)


def field_state(sim, vx: torch.Tensor, vy: torch.Tensor, marker: torch.Tensor):
    from phi import math
    from phi.field import CenteredGrid, StaggeredGrid

    from fluidperc.sim.simulation import State

    def wrap(t):
        return math.tensor(t.transpose(1, 2), math.batch("sim"), math.spatial("x,y"))

    values = math.stack([wrap(vx), wrap(vy)], math.dual(vector="x,y"))
    return State(StaggeredGrid(values, sim.vbc, **sim.grid), CenteredGrid(wrap(marker), sim.mbc, **sim.grid))


def field_tensors(state) -> dict[str, torch.Tensor]:
    v = state.velocity
    return {"velocity_x": v.vector["x"].values.native("sim,y,x"), "velocity_y": v.vector["y"].values.native("sim,y,x"),
            "marker": state.marker.values.native("sim,y,x")}


def legacy_forward(model, steps_cache: dict):
    """A drop-in for ``model.forward`` (a SolverInTheLoop) that runs the baseline path."""
    from phi import math
    from phi.field import CenteredGrid, StaggeredGrid

    from fluidperc.sim.simulation import State

    def forward(vx, vy, marker, reynolds, steps: int, corrected: bool = True):
        sim = model.sim
        fs = steps_cache.setdefault(id(sim), FieldSteps(sim))
        re_list = [float(r) for r in reynolds]
        state = field_state(sim, vx, vy, marker)
        out = []
        for _ in range(steps):
            state = fs.step(state, re_list)
            if corrected:
                uv = state.velocity.at_centers().values.native(["sim", "vector", "y", "x"])
                c = model.correction(uv, reynolds)
                values = math.tensor(c.permute(0, 3, 2, 1), math.batch("sim"), math.spatial("x,y"),
                                     math.channel(vector="x,y"))
                corr = StaggeredGrid(CenteredGrid(values, state.velocity.extrapolation, **sim.grid), sim.vbc, **sim.grid)
                state = State(state.velocity + corr, state.marker)
            out.append(field_tensors(state))
        return out

    return forward
