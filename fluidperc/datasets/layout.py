"""What a dataset store holds, as every writer, reader and verifier agrees: its variables and per-sim
coordinates, the attributes a spec implies, the stored face counts of each scene, and the content checksum of a
sim's frames (``frames_sha256`` on the ``complete`` array). fluidperc.datasets.store writes this layout;
fluidperc.datasets.verify checks a store against it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fluidperc.datasets.spec import DatasetSpec
from fluidperc.sim.scenes import diffusion_substeps, scene_entry, scene_info

if TYPE_CHECKING:
    import zarr

VARIABLES = ("velocity_x", "velocity_y", "marker")
SIM_COORDS = ("reynolds", "seed", "viscosity", "reynolds_ud", "is_test")
VISCOSITY_CONVENTION = (
    "effective Re as in Solver-in-the-Loop: explicit diffusion per step alpha = dt * res_x^2 / Re on the grid being "
    "stepped, i.e. nu = width^2 / Re in domain units, independent of resolution; reynolds_ud = U*D/nu"
)

CHECKSUM_ATTR = "frames_sha256"  # on the complete array: {sim: {variable: sha256 of its decoded float32 frames}}


def frames_sha256(frames: np.ndarray) -> str:
    """One variable of one sim, as decoded from the store (dtype and shape included in what is hashed)."""
    a = np.ascontiguousarray(frames)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def face_shapes(scene: str, ny: int, nx: int) -> dict[str, tuple[int, int]]:
    """Stored face counts: open boundaries keep both boundary faces (n+1), walls keep interior faces (n-1)."""
    entry = scene_entry(scene)
    x_faces = nx + 1 if entry.open_x else nx - 1
    y_faces = ny + 1 if entry.open_y else ny - 1
    return {"velocity_x": (ny, x_faces), "velocity_y": (y_faces, nx), "marker": (ny, nx)}


def expected_attrs(spec: DatasetSpec, which: Literal["high", "low"], high_path: Path) -> dict[str, Any]:
    info = scene_info(spec.scene)
    ny, nx = spec.resolution if which == "high" else spec.low_resolution
    return {
        "scene": spec.scene,
        "description": info.description,
        "domain": [info.width, info.height],
        "resolution": [ny, nx],
        "dt": info.dt,
        "steps": spec.n_steps,
        "keep_from": spec.keep_from,
        "boundary_conditions": {"velocity": info.velocity_boundary, "marker": info.marker_boundary,
                                "obstacle": info.obstacle},
        "viscosity_convention": VISCOSITY_CONVENTION,
        "diffusion_substeps": diffusion_substeps(info, spec.resolution[1], min(r for r, _ in spec.sims())),
        "source": "simulated" if which == "high" else f"downsampled (face/cell averages, factor {spec.factor}) from {high_path.name}",
        "factor": 1 if which == "high" else spec.factor,
        "spec": json.loads(spec.model_dump_json()),
    }


def sim_splits(group: "zarr.Group") -> np.ndarray:
    """Each sim's split code (fluidperc.datasets.spec.SPLITS); a store written before validation splits existed
    (no ``split`` array) has training and test sims only."""
    if "split" in group:
        return group["split"][:].astype(np.int8)
    return np.where(group["is_test"][:].astype(bool), 2, 0).astype(np.int8)


def same_spec(recorded: dict[str, Any], spec: DatasetSpec) -> bool:
    """A store's recorded spec is ``spec`` (compared as validated specs: fields added since it was written take
    their defaults)."""
    try:
        return DatasetSpec.model_validate(recorded) == spec
    except Exception:  # noqa: BLE001 - a spec that no longer validates is another spec
        return False


def recorded_checksums(group: "zarr.Group") -> dict[int, dict[str, str]]:
    return {int(k): v for k, v in dict(group["complete"].attrs).get(CHECKSUM_ATTR, {}).items()}
