"""Wall time per frame of every path of the combined pipeline, and of the plain-sim resolution ladder, at the
study's plume size (64x64 -> 128x128), measured by the evaluation job's own code.

    .venv/bin/python -m benchmarks.bench_combined [--repeats 3] [--steps 20]

A small plume dataset (128x128, downsampled to 64x64) is generated; a SOL cell and a marker SR cell are trained for
one step (weights do not change the cost); then ``evaluate_combined`` runs --repeats times. Each run times, in the
same process: the low-res sim + SOL + SR (corrected), the low-res sim + SR (source), the high-res sim (the
baseline: every ratio is to it) and the plain sim at the ladder's grids. Medians over the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import xarray as xr

from benchmarks.common import table, write

SPEC = {"scene": "plume", "resolution": [128, 128], "factor": 2, "train_reynolds": [1.0e5, 4.0e5],
        "test_reynolds": [2.0e5], "steps": 60, "keep_from": 30, "sims_per_task": 3, "frames_per_chunk": 10}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=20, help="rollout steps per path (at most the stored frames - 1)")
    args = p.parse_args()

    from fluidperc.datasets import generate
    from fluidperc.datasets.spec import DatasetSpec
    from fluidperc.evaluation.combined import evaluate_combined
    from fluidperc.tasks.cell import CellConfig
    from fluidperc.tasks.settings import EvalSettings
    from fluidperc.train import run

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        spec = DatasetSpec.model_validate(SPEC)
        generate.generate_all(spec, root)
        base = {"steps": 1, "batch_size": 2, "unroll": 2, "checkpoint_every": 1, "validate_every": 1, "val_samples": 1}
        sol = CellConfig(task="sol", loss="mse", scene="plume", data_dir=str(root), resolution=(64, 64), settings=base)
        sr = CellConfig(task="sr", loss="mse", scene="plume", data_dir=str(root), resolution=(64, 64),
                        high_resolution=(128, 128), settings={**base, "variable": "marker"})
        for cell in (sol, sr):
            run(cell, Path(tmp) / cell.task, progress=False)
        settings = EvalSettings(rollout_steps=args.steps, animation_frames=0).model_dump_json()
        paths: dict[str, list[float]] = {}
        for i in range(args.repeats):
            out = Path(tmp) / f"combined-{i}.zarr"
            evaluate_combined(sol.model_dump_json(), str(Path(tmp) / "sol"), sr.model_dump_json(),
                              str(Path(tmp) / "sr"), str(out), settings)
            ds = xr.open_zarr(out).load()
            for name, seconds in json.loads(ds.attrs["seconds_per_frame"]).items():
                paths.setdefault(name, []).append(seconds)
            for grid, seconds in zip(ds.rung.values, ds.ladder_seconds_per_frame.values):
                paths.setdefault(f"plain sim {str(grid).split('_')[-1]}", []).append(float(seconds))
    medians = {k: statistics.median(v) for k, v in paths.items()}
    baseline = medians["high-res sim"]
    names = {"corrected": "low-res + SOL + SR", "source": "low-res + SR", "high-res sim": "high-res sim 128x128 (baseline)"}
    rows = [[names.get(k, k), f"{v * 1e3:.1f}", f"{v / baseline:.2f}x"] for k, v in medians.items()]
    print(table(["path", "ms per frame (median)", "vs high-res sim"], rows))
    path = write("bench_combined", {"repeats": args.repeats, "rollout_steps": args.steps, "dataset": SPEC,
                                    "seconds_per_frame": {k: {"median": medians[k], "runs": v} for k, v in paths.items()},
                                    "ratio_to_high_res_sim": {k: medians[k] / baseline for k in medians}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
