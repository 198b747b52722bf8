"""Physics of the two scenes (real PhiFlow runs), the fast step against plain PhiFlow, and downsampling."""

from __future__ import annotations

import numpy as np
import pytest

from fluidperc.sim.downsample import downsample_frame
from fluidperc.sim.scenes import diffusion_substeps, scene_info
from fluidperc.sim.simulation import Simulation, components


def run(scene, ny, nx, reynolds, seeds, steps, every=None):
    sim = Simulation(scene, ny, nx, reynolds, diffusion_substeps(scene_info(scene), nx, min(reynolds)))
    state = sim.initial_state(seeds)
    history = []
    for i in range(1, steps + 1):
        state = sim.step(state)
        if every and i % every == 0:
            history.append(components(state))
    return sim, state, history


def divergence(c, scene, ny, nx, width, height):
    u, v = c["velocity_x"], c["velocity_y"]
    u = np.pad(u, [(0, 0)] * (u.ndim - 1) + [(1, 1)])  # walls in x: zero normal velocity on the boundary faces
    if scene == "plume":
        v = np.pad(v, [(0, 0)] * (v.ndim - 2) + [(1, 1), (0, 0)])
    return np.diff(u, axis=-1) / (width / nx) + np.diff(v, axis=-2) / (height / ny)


@pytest.fixture(scope="module")
def karman_developed():
    """One 128x64 Karman sim at Re 2e5 past start-up (it sheds from about step 400)."""
    return run("karman", 128, 64, [2e5], [0], steps=560, every=4)


@pytest.mark.slow
def test_karman_flow_sheds_vortices_behind_the_cylinder(karman_developed):
    _, _, history = karman_developed
    late = history[-30:]  # steps 440..560
    probe = np.array([h["velocity_x"][0, int(0.45 * 128), 31] for h in late])  # x = 50, y = 90: behind the cylinder
    assert probe.std() > 0.1, f"the wake is steady (std of u_x {probe.std():.3f})"
    wake = late[-1]["velocity_y"][0, 45:96]  # y 70..150
    assert np.abs(wake - wake[:, ::-1]).mean() > 0.1, "the wake is still mirror-symmetric"


@pytest.mark.slow
def test_karman_velocity_is_divergence_free_and_zero_inside_the_obstacle(karman_developed):
    sim, state, _ = karman_developed
    c = components(state)
    div = divergence({k: v[0] for k, v in c.items()}, "karman", 128, 64, 100, 200)
    yy, xx = np.meshgrid((np.arange(128) + 0.5) * 200 / 128, (np.arange(64) + 0.5) * 100 / 64, indexing="ij")
    away = np.hypot(xx - 50, yy - 50) > 10 + 2 * 100 / 64
    assert np.abs(div[away]).max() < 1e-3
    yf, xf = np.meshgrid(np.arange(129) * 200 / 128, (np.arange(64) + 0.5) * 100 / 64, indexing="ij")
    inside = np.hypot(xf - 50, yf - 50) < 10 - 2 * 100 / 64
    assert np.abs(c["velocity_y"][0][inside]).max() < 1e-5


def test_fast_step_matches_plain_phiflow_to_solver_tolerance():
    sim, state, _ = run("karman", 64, 32, [1e5, 4e5], [0, 1], steps=30)
    fast = components(sim.step(state))
    reference = components(sim.reference_step(state)[0])
    for var in fast:
        np.testing.assert_allclose(fast[var], reference[var], atol=1e-4, rtol=0)


def test_plume_smoke_rises_and_closed_box_stays_divergence_free():
    _, state, history = run("plume", 64, 64, [1e5], [0], steps=120, every=40)
    ys = (np.arange(64) + 0.5) * 200 / 64
    heights = [float((h["marker"][0].sum(axis=1) * ys).sum() / h["marker"][0].sum()) for h in history]
    assert heights[0] < heights[1] < heights[2], f"smoke centre of mass does not rise: {heights}"
    div = divergence({k: v[0] for k, v in components(state).items()}, "plume", 64, 64, 200, 200)
    assert np.abs(div).max() < 1e-3


def test_same_reynolds_and_seed_reproduce_bit_for_bit_also_in_another_batch():
    a = components(run("karman", 32, 16, [3e5], [7], steps=15)[1])
    b = components(run("karman", 32, 16, [3e5], [7], steps=15)[1])
    c = components(run("karman", 32, 16, [1e5, 3e5], [2, 7], steps=15)[1])
    for var in a:
        assert np.array_equal(a[var], b[var])
        assert np.array_equal(a[var][0], c[var][1]), f"{var} depends on the other sims in the batch"
    d = components(run("karman", 32, 16, [3e5], [8], steps=15)[1])
    assert not np.array_equal(a["velocity_x"], d["velocity_x"]), "a different seed must change the flow"


@pytest.mark.parametrize("scene, ny, nx", [("karman", 32, 16), ("plume", 32, 32)])
def test_downsampling_keeps_a_uniform_flow_uniform_and_matches_the_low_store_shapes(scene, ny, nx):
    from fluidperc.datasets.layout import face_shapes

    hi = face_shapes(scene, ny, nx)
    frame = {"velocity_x": np.full(hi["velocity_x"], 0.3), "velocity_y": np.full(hi["velocity_y"], -1.2),
             "marker": np.full(hi["marker"], 2.0)}
    low = downsample_frame(frame, ny, nx, 2)
    want = face_shapes(scene, ny // 2, nx // 2)
    for var in frame:
        assert low[var].shape == want[var]
        np.testing.assert_allclose(low[var], frame[var].flat[0])


def test_downsampled_faces_carry_the_flux_of_the_fine_faces_they_cover():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(8, 7))  # ny=8, nx=8, walls in x: 7 interior faces
    low = downsample_frame({"velocity_x": u, "velocity_y": np.zeros((9, 8)), "marker": np.zeros((8, 8))}, 8, 8, 2)
    # low face j (interior, j = 0..2) sits at fine face 2j+1; it averages fine rows 2k, 2k+1
    np.testing.assert_allclose(low["velocity_x"][1, 2], u[2:4, 5].mean())


@pytest.mark.parametrize("scene,ny,nx", [("karman", 32, 16), ("plume", 24, 24)])
def test_the_step_on_value_tensors_equals_the_step_on_fields_bit_for_bit_and_its_gradients_to_rounding(scene, ny, nx):
    """Simulation.step_tensors (compiled parts on value tensors, no field objects between steps) computes what the
    field-level path that benchmarks/baseline_sol.py keeps as the baseline computes: the states bit for bit, the
    gradients to float32 rounding (the backward graphs sum the same terms in another order)."""
    import torch

    from benchmarks.baseline_sol import FieldSteps, field_state, field_tensors

    sim = Simulation(scene, ny, nx, [1e5, 3e5], 1)
    state = sim.initial_state([0, 1])
    for _ in range(3):
        state = sim.step(state)
    start = {k: torch.from_numpy(v) for k, v in components(state).items()}
    reynolds = [2e5, 5e5]
    fields = FieldSteps(sim)

    def unroll(step):
        vx = start["velocity_x"].clone().requires_grad_(True)
        t = {"velocity_x": vx, "velocity_y": start["velocity_y"], "marker": start["marker"]}
        for _ in range(4):  # past the eager first call, into the compiled traces
            t = step(t)
        loss = sum((v ** 2).sum() for v in t.values())
        loss.backward()
        return t, vx.grad

    new, new_grad = unroll(lambda t: sim.step_tensors(t["velocity_x"], t["velocity_y"], t["marker"], reynolds))
    old, old_grad = unroll(lambda t: field_tensors(fields.step(field_state(sim, t["velocity_x"], t["velocity_y"],
                                                                            t["marker"]), reynolds)))
    for k in new:
        assert torch.equal(new[k], old[k]), k
    assert new_grad.abs().sum() > 0
    torch.testing.assert_close(new_grad, old_grad, rtol=1e-5, atol=1e-6 * float(old_grad.abs().max()))


def test_the_ladder_and_the_high_res_path_step_through_the_code_sols_rollouts_use(monkeypatch):
    """Every path of the accuracy-vs-cost comparison is timed through Simulation.step_tensors, the stepping code
    SOL's unroll and source rollout run (the field-object Simulation.step costs about twice as much at 64x32):
    with Simulation.step made to fail, the ladder still runs, and its low rung steps exactly as step_tensors does."""
    import torch

    from fluidperc.sim.ladder import rollout_tensors, run_ladder
    from fluidperc.sim.simulation import Simulation, state_tensors

    from fluidperc.sim.scenes import diffusion_substeps, scene_info

    high = Simulation("karman", 32, 16, [2.0e5], diffusion_substeps(scene_info("karman"), 16, 2.0e5))
    start = high.initial_state([0])

    def refuse(*args, **kwargs):
        raise AssertionError("a timed path stepped through Simulation.step")

    monkeypatch.setattr(Simulation, "step", refuse)
    out = run_ladder("karman", [(16, 8), (32, 16)], start, [2.0e5], 2.0e5, 3, torch.device("cpu"),
                     lambda sim, frames: torch.stack([f["velocity_x"] for f in frames], dim=1), start_grid=(32, 16))
    assert set(out) == {(16, 8), (32, 16)} and all(seconds > 0 for _, seconds in out.values())
    again = rollout_tensors(high, start, 3, torch.tensor([2.0e5]))
    stepped = torch.stack([f["velocity_x"] for f in again], dim=1)
    assert stepped.abs().max() > 0 and torch.equal(out[(32, 16)][0], stepped), \
        "the top rung is the plain sim stepped by step_tensors from the same state"
    assert state_tensors(start)["marker"].shape == (1, 32, 16)
