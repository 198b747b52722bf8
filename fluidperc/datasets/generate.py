"""Generation jobs: simulate a group of sims together at high resolution, write them and their downsampled
reference, mark each sim complete only after all its frames are written; then compute the statistics."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fluidperc.datasets import layout, store
from fluidperc.datasets.spec import DatasetSpec
from fluidperc.plugins import import_plugins
from fluidperc.sim.downsample import downsample_frame


def simulate_group(spec_json: str, data_dir: str, sims: list[int], device: str = "auto",
                   progress: bool = True, plugins: tuple[str, ...] = ()) -> list[int]:
    """Simulate ``sims`` (indices into the spec's sim list) in one batched run on ``device`` (auto | cpu | cuda);
    returns the sims it completed. ``plugins``: the sweep's modules, imported first (a scene may come from one)."""
    from fluidperc.devices import resolve  # torch, PhiFlow: in the datagen job only
    from fluidperc.sim.simulation import Simulation, components  # the planner imports this module

    import_plugins(plugins)
    spec = DatasetSpec.model_validate_json(spec_json)
    high_path, low_path = spec.store_paths(Path(data_dir))
    high, low = store.open_group(high_path), store.open_group(low_path)
    todo = [s for s in sims if not (high["complete"][s] and low["complete"][s])]
    if not todo:
        return []
    all_sims = spec.sims()
    ny, nx = spec.resolution
    substeps = int(high.attrs["diffusion_substeps"])
    sim = Simulation(spec.scene, ny, nx, [all_sims[s][0] for s in todo], substeps, device=resolve(device))
    state = sim.initial_state([all_sims[s][1] for s in todo])
    chunk = min(spec.frames_per_chunk, spec.n_frames)
    buffer: list[dict[str, np.ndarray]] = []
    written = 0
    label = f"{spec.store_name('high')} sims {todo}"
    for step in tqdm(range(1, spec.n_steps + 1), desc=label, unit="step", file=sys.stderr, disable=not progress,
                     mininterval=5):
        state = sim.step(state)
        if step <= spec.keep_from:
            continue
        buffer.append(components(state))
        if len(buffer) == chunk or step == spec.n_steps:
            stacked = {k: np.stack([f[k] for f in buffer], axis=1) for k in layout.VARIABLES}  # sim, frame, ...
            lowered = downsample_frame(stacked, ny, nx, spec.factor)
            for i, s in enumerate(todo):
                store.write_frames(high, s, written, {k: v[i] for k, v in stacked.items()})
                store.write_frames(low, s, written, {k: v[i] for k, v in lowered.items()})
            written += len(buffer)
            buffer = []
    # Read every frame back before vouching for it: unwritten chunks read as NaN (the fill value), so a write
    # lost to a full disk or a killed neighbour is caught here as surely as a simulation that blew up. What was
    # read back is what the checksums vouch for.
    sums: dict[Path, dict[int, dict[str, str]]] = {high_path: {}, low_path: {}}
    for s in todo:
        for group, name in ((high, high_path), (low, low_path)):
            frames = {v: group[v][s] for v in layout.VARIABLES}
            bad = [v for v, a in frames.items() if not np.isfinite(a).all()]
            if bad:
                raise FloatingPointError(f"{label}: sim {s} has non-finite or unwritten values in {', '.join(bad)} of "
                                         f"{name}; it was not marked complete (relaunch to simulate it again)")
            sums[name][s] = {v: layout.frames_sha256(a) for v, a in frames.items()}
    for name, per_sim in sums.items():
        store.record_checksums(name, per_sim)
    for s in todo:
        store.mark_complete(high, s)
        store.mark_complete(low, s)
    return todo


def finalize(spec_json: str, data_dir: str, plugins: tuple[str, ...] = ()) -> dict[str, dict[str, dict[str, float]]]:
    """Statistics over the training sims, written into both stores' attrs."""
    import_plugins(plugins)
    spec = DatasetSpec.model_validate_json(spec_json)
    out = {}
    for path in spec.store_paths(Path(data_dir)):
        stats = store.compute_statistics(path)
        store.write_statistics(path, stats)
        out[path.name] = stats
    return out


def prepare(spec: DatasetSpec, data_dir: Path) -> None:
    """Create both stores before any task runs (tasks only write regions and never race on creation). The
    launcher holds the data directory's lock here, so a store's temporaries (a skeleton being created, a broken
    store moved aside) belong to a launch that died: they are removed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    high_path, low_path = spec.store_paths(data_dir)
    for path in (high_path, low_path):
        for stale in data_dir.glob(f".{path.name}.*-*"):
            shutil.rmtree(stale, ignore_errors=True)
    store.create_store(high_path, spec, "high", high_path)
    store.create_store(low_path, spec, "low", high_path)


def progress(spec: DatasetSpec, data_dir: Path) -> tuple[int, int]:
    high_path, low_path = spec.store_paths(data_dir)
    done = store.completed(high_path)
    done_low = store.completed(low_path)
    n = len(spec.sims())
    if done.size != n or done_low.size != n:
        return 0, n
    return int((done & done_low).sum()), n


def generate_all(spec: DatasetSpec, data_dir: Path, device: str = "auto") -> None:
    """The whole dataset in this process (tests, benchmarks): what the datagen stage's array and statistics job do."""
    prepare(spec, data_dir)
    simulate_group(spec.model_dump_json(), str(data_dir), list(range(len(spec.sims()))), device=device, progress=False)
    finalize(spec.model_dump_json(), str(data_dir))
