"""What an imported dataset is: frames someone else made (another solver, LSiM's published fields, a video),
mapped onto the stores' variables and dims by a few lines of a sweep. Light on purpose: the sweep schema
validates it without xarray; the reading is in fluidperc.datasets.sources and .importer."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    field_validator,
    model_validator,
)

from fluidperc.datasets.grids import Resolution, check_downsampling
from fluidperc.datasets.names import store_name
from fluidperc.datasets.sources import check_source
from fluidperc.sim.scenes import scenes

Variable = Literal["velocity_x", "velocity_y", "marker"]
Dim = Literal["sim", "frame", "y", "x"]
DIMS: tuple[str, ...] = ("sim", "frame", "y", "x")


class ImportSpec(BaseModel):
    """One external dataset. It becomes two stores like a simulated pair, ``<name>_<ny>x<nx>.zarr`` at its own
    grid and a cell-averaged one at ``resolution // factor``, with the velocity at cell centres (layout
    ``centred``); AE and SR train on them as on simulated stores. Tasks that step a solver (SOL) cannot."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*[a-z0-9]$", max_length=64,
                      description="the dataset's name (its stores are <name>_<ny>x<nx>.zarr); not a scene's")
    path: str = Field(min_length=1, description="a Zarr store or NetCDF file that xarray opens, or a folder of .npz")
    source: str | None = Field(None, description="a registered source (xarray, npz, ...); default: npz for a folder "
                               "of .npz files, else xarray")
    variables: dict[Variable, str] = Field(
        min_length=1, description="our variable -> the source's name: {marker: density} and/or {velocity_x: u, "
        "velocity_y: v} (velocity at cell centres)")
    dims: dict[Dim, str] = Field(default_factory=dict, description="our dim -> the source's (sim, frame, y, x); "
                                 "unnamed dims are called as ours")
    resolution: Resolution = Field(description="the source's grid [ny, nx] (checked against the data)")
    factor: int = Field(2, ge=2, le=16, description="the low-resolution store is resolution // factor, by cell averages")
    test_sims: list[int] = Field(min_length=1, description="indices along sim of the held-out test sims")
    domain: tuple[PositiveFloat, PositiveFloat] | None = Field(
        None, description="[width, height] in your units (vorticity's grid spacing); default: 1 per cell")
    dt: PositiveFloat = Field(1.0, description="time between frames")
    reynolds: str | None = Field(None, description="the source's per-sim variable or coordinate holding Re (optional)")

    @field_validator("name")
    @classmethod
    def _not_a_scene(cls, v: str) -> str:
        if v in scenes():
            raise ValueError(f"'{v}' is a registered scene; an imported dataset needs a name of its own")
        return v

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        return v if v is None else check_source(v)

    @field_validator("test_sims")
    @classmethod
    def _test_sims(cls, v: list[int]) -> list[int]:
        if min(v) < 0 or len(set(v)) != len(v):
            raise ValueError(f"test_sims {v}: expected distinct indices >= 0 along the sim dim")
        return sorted(v)

    @model_validator(mode="after")
    def _consistent(self) -> "ImportSpec":
        if ("velocity_x" in self.variables) != ("velocity_y" in self.variables):
            raise ValueError("variables: a velocity needs both velocity_x and velocity_y")
        theirs = [self.dims.get(d, d) for d in DIMS]
        if len(set(theirs)) != len(theirs):
            raise ValueError(f"dims: two of our dims map to the same source dim ({dict(zip(DIMS, theirs))})")
        check_downsampling(self.resolution, self.factor)
        return self

    @property
    def low_resolution(self) -> tuple[int, int]:
        return self.resolution[0] // self.factor, self.resolution[1] // self.factor

    @property
    def provides(self) -> tuple[str, ...]:
        """The fields cells may train on: 'velocity' and/or 'marker'."""
        return tuple(v for v, names in (("velocity", ("velocity_x",)), ("marker", ("marker",)))
                     if names[0] in self.variables)

    def store_paths(self, data_dir: Path) -> tuple[Path, Path]:
        return data_dir / store_name(self.name, self.resolution), data_dir / store_name(self.name, self.low_resolution)

    def resolved_path(self, base: Path | None = None) -> Path:
        """The source's path; a relative one is taken from ``base`` (the launch's working directory)."""
        p = Path(self.path).expanduser()
        return p if p.is_absolute() or base is None else base / p
