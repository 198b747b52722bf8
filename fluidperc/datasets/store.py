"""The Zarr v3 layout every later stage reads (``xarray.open_zarr`` opens it as is).

Variables: velocity_x (sim, frame, y, x_face), velocity_y (sim, frame, y_face, x), marker (sim, frame, y, x),
complete (sim). Coordinates: sim, frame, time(frame), y, x, y_face, x_face in domain units, and per sim reynolds,
seed, viscosity, reynolds_ud (U*D/nu), is_test. No chunk spans two sims, so array tasks write disjoint chunks;
the launcher creates the store (arrays, coordinates, attrs) before any task runs.

Each complete sim's frames carry a content checksum (sha256 of each variable's decoded frames, in the ``complete``
array's ``frames_sha256`` attribute), taken from what was read back after writing, so ``python -m
fluidperc.datasets verify`` can prove a store against itself. Not against another machine: regenerating the plume
on another CPU may change it by rounding.
"""

from __future__ import annotations

import fcntl
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from fluidperc import __version__
from fluidperc.atomic import swap_in, unique_sibling
from fluidperc.datasets import layout
from fluidperc.datasets.layout import (
    CHECKSUM_ATTR,
    SIM_COORDS,
    VARIABLES,
    expected_attrs,
    face_shapes,
)
from fluidperc.datasets.spec import SPLITS, DatasetSpec
from fluidperc.datasets.verify import inspect_store
from fluidperc.errors import UserError
from fluidperc.provenance import code_commit
from fluidperc.sim.scenes import scene_info, viscosity

if TYPE_CHECKING:
    import zarr  # imported where a store is opened: planning a sweep whose stores do not exist yet needs none

def versions() -> dict[str, str]:
    """The simulation stack's versions, from the installed packages' metadata: the launcher creates the stores,
    and importing PhiFlow and torch only to read their versions cost it 2 s of CPU per launch."""
    from importlib.metadata import version

    return {"phiflow": version("phiflow"), "phiml": version("phiml"), "torch": version("torch"),
            "fluidperc": __version__, "fluidperc_commit": code_commit()}


def _dims(var: str) -> list[str]:
    return {"velocity_x": ["sim", "frame", "y", "x_face"], "velocity_y": ["sim", "frame", "y_face", "x"],
            "marker": ["sim", "frame", "y", "x"]}[var]


def check_existing(path: Path, spec: DatasetSpec, which: Literal["high", "low"], high_path: Path) -> bool:
    """True when ``path`` holds a usable store of this spec; False when it is absent, or broken with no complete
    sim to lose (create_store then rebuilds it). Refuses, with the command that fixes it, a store of another
    spec and a broken store that holds complete sims."""
    if not path.exists():
        return False
    report = inspect_store(path, spec, which, high_path)
    if report.foreign:
        existing = dict(open_group(path, "r").attrs)
        raise UserError(
            f"{path} already holds a dataset made from a different spec; its spec is {existing.get('spec')}, "
            f"the sweep asks for {expected_attrs(spec, which, high_path)['spec']}. Use another data_dir, or move it "
            f"away (`mv {path} {path}.other`) and relaunch."
        )
    if report.problems and report.complete:
        raise UserError(
            f"{path} is broken ({'; '.join(report.problems)}) yet holds {len(report.complete)} sim(s) marked "
            f"complete, which a rebuild would discard, so it is left as it is. Inspect it with `python -m "
            f"fluidperc.datasets verify {path}`; to discard it and simulate again: `rm -r {path}`, then relaunch."
        )
    return not report.problems


def broken_note(path: Path, spec: DatasetSpec, which: Literal["high", "low"], high_path: Path) -> str:
    """Why an existing store will be rebuilt (empty when it is absent or fine)."""
    if not path.exists():
        return ""
    report = inspect_store(path, spec, which, high_path)
    return "; ".join(report.problems)


def create_store(path: Path, spec: DatasetSpec, which: Literal["high", "low"], high_path: Path) -> None:
    """Create the store, or check that an existing one was made from the same spec (then keep its data). A
    broken store without complete sims (a creation cut short, say) is moved aside and made anew."""
    if check_existing(path, spec, which, high_path):
        return
    if path.exists():
        aside = unique_sibling(path, "broken")
        path.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    attrs = expected_attrs(spec, which, high_path)
    info = scene_info(spec.scene)
    ny, nx = attrs["resolution"]
    sims = spec.sims()
    n_sims, n_frames = len(sims), spec.n_frames
    tmp = unique_sibling(path, "creating")  # never shared: two creators cannot write into one skeleton
    import zarr

    group = zarr.open_group(str(tmp), mode="w")
    shapes = face_shapes(spec.scene, ny, nx)
    chunk_frames = min(spec.frames_per_chunk, n_frames)
    coord_attr = " ".join(("time",) + SIM_COORDS)
    for var in VARIABLES:
        arr = group.create_array(var, shape=(n_sims, n_frames, *shapes[var]), chunks=(1, chunk_frames, *shapes[var]),
                                 dtype="float32", fill_value=np.nan, dimension_names=_dims(var))
        arr.attrs.update({"coordinates": coord_attr, "long_name": var.replace("_", " ")})
    done = group.create_array("complete", shape=(n_sims,), chunks=(1,), dtype="bool", fill_value=False,
                              dimension_names=["sim"])
    done.attrs["long_name"] = "all frames of the sim are written"
    dx, dy = info.width / nx, info.height / ny
    x_face_n, y_face_n = shapes["velocity_x"][1], shapes["velocity_y"][0]
    coords = {
        "sim": np.arange(n_sims), "frame": np.arange(n_frames),
        "time": (spec.keep_from + 1 + np.arange(n_frames)) * info.dt,
        "y": (np.arange(ny) + 0.5) * dy, "x": (np.arange(nx) + 0.5) * dx,
        "y_face": (np.arange(y_face_n) + (0 if y_face_n == ny + 1 else 1)) * dy,
        "x_face": (np.arange(x_face_n) + (0 if x_face_n == nx + 1 else 1)) * dx,
        "reynolds": np.array([r for r, _ in sims]), "seed": np.array([s for _, s in sims]),
        "viscosity": np.array([viscosity(info, r) for r, _ in sims]),
        "is_test": np.array(spec.is_test()),
        "split": np.array(spec.splits(), dtype=np.int8),
    }
    coords["reynolds_ud"] = info.characteristic_velocity * info.characteristic_length / coords["viscosity"]
    dim_of = {"time": "frame", "split": "sim", **{k: "sim" for k in SIM_COORDS}}
    for name, values in coords.items():
        arr = group.create_array(name, shape=values.shape, dtype=values.dtype, dimension_names=[dim_of.get(name, name)])
        arr[:] = values
    group["split"].attrs.update({"flag_values": list(range(len(SPLITS))), "flag_meanings": " ".join(SPLITS),
                                 "long_name": "the sim's split: training, validation (selection) or test"})
    group.attrs.update({**attrs, "versions": versions()})
    consolidate(tmp)
    # A crash mid-creation never leaves something that looks like a store; if another process created it
    # meanwhile, its skeleton stands (it holds the same spec, or check_existing refuses it below).
    if not swap_in(tmp, path, replace=False):
        check_existing(path, spec, which, high_path)


def consolidate(path: Path) -> None:
    """Consolidated metadata, which xarray.open_zarr reads in one request. zarr warns at every call that Zarr v3
    has not standardised it yet; we chose it knowingly, so the warning is not repeated to users."""
    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(str(path))


def open_group(path: Path, mode: str = "r+") -> "zarr.Group":
    import zarr

    if not path.exists():
        raise UserError(f"{path}: no such dataset store; run the datagen stage for it first")
    return zarr.open_group(str(path), mode=mode, use_consolidated=False)


def completed(path: Path) -> np.ndarray:
    if not path.exists():
        return np.zeros(0, dtype=bool)
    return open_group(path, "r")["complete"][:]


def write_frames(group: "zarr.Group", sim: int, start: int, frames: dict[str, np.ndarray]) -> None:
    """frames[var] is [frames, ...] for one sim; writes its own chunks only."""
    for var in VARIABLES:
        data = frames[var]
        group[var][sim, start : start + data.shape[0]] = data


def mark_complete(group: "zarr.Group", sim: int) -> None:
    group["complete"][sim] = True


def checksum_lock(path: Path) -> Path:
    """Beside the store, not in it (zarr warns of foreign files in a hierarchy): ``.<store>.lock``."""
    return Path(path).parent / f".{Path(path).name}.lock"


def _merge_checksums(path: Path, sums: dict[int, dict[str, str]]) -> None:
    import zarr

    done = zarr.open_array(str(Path(path) / "complete"), mode="r+")
    recorded = dict(done.attrs.get(CHECKSUM_ATTR, {}))
    recorded.update({str(sim): dict(per_var) for sim, per_var in sums.items()})
    done.attrs[CHECKSUM_ATTR] = recorded


def record_checksums(path: Path, sums: dict[int, dict[str, str]], shared: bool = True) -> None:
    """Merge ``sums`` into the store's checksum attribute. Array tasks of one store finish concurrently, and an
    attribute write replaces the whole metadata document, so for a ``shared`` store the read-merge-write holds a
    POSIX lock (``lockf``: it holds between NFS clients, where flock on a directory fails) on a file beside it."""
    if not shared:  # a store only this process writes (an import's temporary)
        _merge_checksums(path, sums)
        return
    with open(checksum_lock(path), "a+") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        try:
            _merge_checksums(path, sums)
        finally:
            fcntl.lockf(lock, fcntl.LOCK_UN)


def compute_statistics(path: Path) -> dict[str, dict[str, float]]:
    """mean/std/min/max per variable over the complete training sims (what the losses normalise with)."""
    group = open_group(path, "r")
    train = np.flatnonzero((layout.sim_splits(group) == 0) & group["complete"][:])
    if train.size == 0:
        raise UserError(f"{path}: no complete training sims to compute statistics from")
    stats = {}
    for var in (v for v in VARIABLES if v in group):  # an imported store may hold only some of them
        total = total_sq = 0.0
        count = 0
        lo, hi = np.inf, -np.inf
        for sim in train:  # one sim at a time: a large store never has to fit in memory
            a = group[var][int(sim)].astype(np.float64)
            total += a.sum()
            total_sq += (a * a).sum()
            count += a.size
            lo, hi = min(lo, a.min()), max(hi, a.max())
        mean = total / count
        stats[var] = {"mean": mean, "std": float(np.sqrt(max(total_sq / count - mean * mean, 0.0))),
                      "min": float(lo), "max": float(hi)}
    return stats


def write_statistics(path: Path, stats: dict[str, dict[str, float]]) -> None:
    """One attribute write, then the consolidated copy that xarray reads; has_statistics checks both, so a crash
    between the two is finished by the relaunch."""
    group = open_group(path)
    group.attrs.update({"statistics": stats, "statistics_over": "complete training sims (split == train)"})
    consolidate(path)


def has_statistics(path: Path) -> bool:
    if not path.exists() or "statistics" not in open_group(path, "r").attrs:
        return False
    import zarr

    try:
        return "statistics" in zarr.open_group(str(path), mode="r", use_consolidated=True).attrs
    except Exception:  # no consolidated metadata yet
        return False
