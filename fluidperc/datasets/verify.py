"""What a dataset store holds and whether it is whole: arrays, shapes, coordinates, spec, complete sims, and
(when asked to read the data) non-finite values, unreadable chunks and checksum mismatches in sims marked
complete (each against the checksum recorded when it was written).

The launcher inspects the structure of every store a sweep writes before it submits anything (cheap: metadata
and the ``complete`` flags); ``python -m fluidperc.datasets verify`` also reads every complete sim's frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from fluidperc.datasets.layout import (
    SIM_COORDS,
    VARIABLES,
    expected_attrs,
    face_shapes,
    frames_sha256,
    recorded_checksums,
    same_spec,
)
from fluidperc.datasets.spec import DatasetSpec

COORDS = ("sim", "frame", "time", "y", "x", "y_face", "x_face")


@dataclass
class StoreReport:
    path: Path
    problems: list[str] = field(default_factory=list)  # the store cannot be used as it is
    foreign: bool = False  # a whole store of another spec: not broken, just not this sweep's
    complete: list[int] = field(default_factory=list)
    incomplete: list[int] = field(default_factory=list)
    nonfinite: list[int] = field(default_factory=list)  # complete sims with NaN or inf (only when scanned)
    mismatched: list[str] = field(default_factory=list)  # "sim 3 velocity_x: ..." (only when scanned)
    unchecked: list[int] = field(default_factory=list)  # complete sims without a recorded checksum (older stores)
    scanned: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and not self.foreign and not self.nonfinite and not self.mismatched

    def summary(self) -> str:
        parts = [f"{len(self.complete)} complete sim(s)", f"{len(self.incomplete)} incomplete"]
        if self.scanned:
            parts.append(f"non-finite values in sims {self.nonfinite}" if self.nonfinite else "all complete sims finite")
            checked = len(self.complete) - len(self.unchecked)
            parts.append(f"CHECKSUM MISMATCH in {'; '.join(self.mismatched)}" if self.mismatched
                         else f"checksums match for {checked} sim(s)")
            if self.unchecked:
                parts.append(f"no checksum recorded for sims {self.unchecked} (written before checksums existed)")
        head = f"{self.path}: " + ", ".join(parts)
        return head + ("" if not self.problems else "; PROBLEMS: " + "; ".join(self.problems))


def expected_shapes(attrs: dict) -> dict[str, tuple[int, ...]]:
    spec = DatasetSpec.model_validate(attrs["spec"])
    ny, nx = attrs["resolution"]
    n_sims, n_frames = len(spec.sims()), spec.n_frames
    faces = face_shapes(spec.scene, ny, nx)
    shapes = {var: (n_sims, n_frames, *faces[var]) for var in faces}
    shapes.update(complete=(n_sims,), sim=(n_sims,), frame=(n_frames,), time=(n_frames,), y=(ny,), x=(nx,),
                  y_face=(faces["velocity_y"][0],), x_face=(faces["velocity_x"][1],))
    shapes.update({c: (n_sims,) for c in ("reynolds", "seed", "viscosity", "reynolds_ud", "is_test")})
    return shapes


def inspect_store(path: Path, spec: DatasetSpec | None = None, which: Literal["high", "low"] | None = None,
                  high_path: Path | None = None, scan: bool = False) -> StoreReport:
    """Report on the store at ``path`` (which must exist). With ``spec``, a store of another spec is ``foreign``.
    With ``scan``, every complete sim's frames are read and checked for NaN and inf."""
    import zarr

    report = StoreReport(Path(path))
    try:
        group = zarr.open_group(str(path), mode="r", use_consolidated=False)
        attrs = dict(group.attrs)
        names = set(group.array_keys())
    except Exception as err:  # not a zarr group at all, or unreadable metadata
        report.problems.append(f"not a readable zarr store ({type(err).__name__}: {str(err).splitlines()[0][:200]})")
        return report
    if "spec" not in attrs or "resolution" not in attrs:
        report.problems.append("no dataset spec in its attributes (not a fluidperc store, or its creation was cut "
                               "short)")
        return report
    if spec is not None and which is not None:
        want = expected_attrs(spec, which, high_path or Path(path))
        if not same_spec(attrs["spec"], spec) or list(attrs["resolution"]) != list(want["resolution"]):
            report.foreign = True
    try:
        shapes = expected_shapes(attrs)
    except Exception as err:
        report.problems.append(f"its recorded spec does not validate ({str(err).splitlines()[0][:200]})")
        return report
    shapes.setdefault("split", shapes["complete"])  # optional: stores written before validation splits lack it
    for name in (*VARIABLES, "complete", *COORDS, *SIM_COORDS, *(("split",) if "split" in names else ())):
        if name not in names:
            report.problems.append(f"array '{name}' is missing")
        elif tuple(group[name].shape) != shapes[name]:
            report.problems.append(f"array '{name}' has shape {tuple(group[name].shape)}, expected {shapes[name]}")
    n_sims = shapes["complete"][0]
    done = np.zeros(n_sims, dtype=bool)
    if "complete" in names and tuple(group["complete"].shape) == (n_sims,):
        done = group["complete"][:].astype(bool)
    if any(f"array '{var}'" in p for var in VARIABLES for p in report.problems):
        done[:] = False  # flags vouch for nothing when a variable is missing or misshapen: no sim is usable
    report.complete = [int(i) for i in np.flatnonzero(done)]
    report.incomplete = [int(i) for i in np.flatnonzero(~done)]
    if scan and not report.problems:
        _scan(group, report)
    return report


def _scan(group, report: StoreReport) -> None:
    """Read every complete sim's frames: non-finite values, chunks that cannot be decoded, and the checksum of
    each variable against the one recorded when the sim was written."""
    report.scanned = True
    sums = recorded_checksums(group)
    for sim in report.complete:
        want = sums.get(sim)
        if want is None:
            report.unchecked.append(sim)
        finite = True
        for var in VARIABLES:
            try:
                frames = group[var][sim]
            except Exception as err:  # a chunk whose compressed bytes no longer decode
                report.mismatched.append(f"sim {sim} {var}: a chunk cannot be read ({type(err).__name__})")
                continue
            finite = finite and bool(np.isfinite(frames).all())
            if want is not None and var in want and frames_sha256(frames) != want[var]:
                report.mismatched.append(f"sim {sim} {var}: its frames differ from what was written")
        if not finite:
            report.nonfinite.append(sim)


def find_stores(path: Path) -> list[Path]:
    """A store itself, or every ``*.zarr`` store directly inside a data directory."""
    path = Path(path)
    if (path / "zarr.json").exists() or path.suffix == ".zarr":
        return [path]
    return sorted(p for p in path.glob("*.zarr") if p.is_dir())
