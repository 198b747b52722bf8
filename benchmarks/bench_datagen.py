"""Frames per second of dataset generation on developed flow: plain PhiFlow against fluidperc's generator.

    .venv/bin/python -m benchmarks.bench_datagen [--sims 8]

For each scene (Karman 128x64, plume 128x128) it first develops the flow (Karman sheds from about step 400),
then times from the same developed state, in one run:
  (a) eager: a plain PhiFlow loop, one sim at a time, make_incompressible with a warm-started iterative solve;
  (b) jit:   the same step under phiml's jit_compile (first call eager, as it must be);
  (c) fluidperc: the batched generator step (compiled parts + direct pressure solve), --sims sims per step.
It also reports the largest difference between (a) and (c) after one step from the same state.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from benchmarks.common import table, write
from fluidperc.sim.jit import compile_step
from fluidperc.sim.scenes import diffusion_substeps, scene_info
from fluidperc.sim.simulation import Simulation, State, components

CASES = {"karman": (128, 64, 450), "plume": (128, 128, 150)}  # ny, nx, steps to develop


def first_sim(state: State) -> State:
    return State(state.velocity.sim[0:1], state.marker.sim[0:1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sims", type=int, default=8, help="sims per batched generator step")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--scenes", nargs="+", default=list(CASES))
    args = p.parse_args()
    rows, results = [], []
    for scene in args.scenes:
        ny, nx, develop = CASES[scene]
        reynolds = list(np.linspace(1e5, 8e5, args.sims))
        substeps = diffusion_substeps(scene_info(scene), nx, min(reynolds))
        fast = Simulation(scene, ny, nx, reynolds, substeps)
        state = fast.initial_state(list(range(args.sims)))
        for _ in range(develop):
            state = fast.step(state)
        single = Simulation(scene, ny, nx, reynolds[:1], substeps, compiled=False)
        start = first_sim(state)
        # A real loop warm-starts each solve from the PREVIOUS step's pressure. Re-running one step from its own
        # solution would converge at once and flatter the baseline, so every timing below runs consecutive steps.
        warm, pressure = single.reference_step(start)
        jitted = compile_step(single.reference_step)
        jitted(warm, pressure)  # trace on real, developed fields

        def consecutive(step, s, p, n):
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                s, p = step(s, p)
                times.append(time.perf_counter() - t0)
            return statistics.median(times), times

        t_eager, te = consecutive(single.reference_step, warm, pressure, args.repeats)
        t_jit, tj = consecutive(jitted, warm, pressure, args.repeats * 2)
        t_fast, tf = consecutive(lambda s, _: (fast.step(s), None), state, None, args.repeats * 2)
        ref = components(single.reference_step(warm, pressure)[0])
        ours = components(Simulation(scene, ny, nx, reynolds[:1], substeps).step(warm))
        max_diff = max(float(np.abs(ref[k] - ours[k]).max()) for k in ref)
        fps = {"eager": 1 / t_eager, "jit": 1 / t_jit, "fluidperc": args.sims / t_fast}
        for name, seconds, per_step in (("eager PhiFlow, 1 sim", t_eager, 1), ("jit PhiFlow, 1 sim", t_jit, 1),
                                        (f"fluidperc, {args.sims} sims/step", t_fast, args.sims)):
            rows.append([f"{scene} {ny}x{nx}", name, f"{seconds * 1e3:.0f}", f"{per_step / seconds:.1f}",
                         f"{(per_step / seconds) / fps['eager']:.0f}x"])
        results.append({"scene": scene, "ny": ny, "nx": nx, "developed_steps": develop, "sims_per_step": args.sims,
                        "ms_per_step": {"eager": t_eager * 1e3, "jit": t_jit * 1e3, "fluidperc": t_fast * 1e3},
                        "times_ms": {"eager": [t * 1e3 for t in te], "jit": [t * 1e3 for t in tj],
                                     "fluidperc": [t * 1e3 for t in tf]},
                        "frames_per_second": fps, "speedup_vs_eager": fps["fluidperc"] / fps["eager"],
                        "max_abs_difference_after_one_step": max_diff})
        print(f"{scene}: max |eager - fluidperc| after one step from the same state: {max_diff:.2e}")
    print(table(["scene", "implementation", "ms/step (median)", "frames/s", "vs eager"], rows))
    print(f"wrote {write('bench_datagen', {'repeats': args.repeats, 'results': results})}")


if __name__ == "__main__":
    main()
