"""What a dataset is: a scene simulated at a high resolution over an (Re, seed) grid, downsampled by a factor."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from fluidperc.datasets.grids import Resolution, check_downsampling
from fluidperc.datasets.names import store_name
from fluidperc.sim.scenes import check_scene, scene_info


SPLITS = ("train", "validation", "test")  # a store's split codes 0, 1, 2


class DatasetSpec(BaseModel):
    """One high/low dataset pair. Sims are the training grid (reynolds x seeds), then the validation grid, then
    the test grid; no (Re, seed) pair is in two of them."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    scene: Annotated[str, AfterValidator(check_scene)] = Field(description="a registered scene (karman, plume, ...)")
    resolution: Resolution = Field(description="high resolution [ny, nx]")
    factor: int = Field(2, ge=1, le=16, description="low resolution = high // factor")
    train_reynolds: list[PositiveFloat] = Field(min_length=1, description="Re of the training sims (one sim per Re and "
                                                "training seed)")
    train_seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="perturbation seeds of the "
                                   "training sims")
    val_reynolds: list[PositiveFloat] = Field(default_factory=list, description="Re of the validation sims: trained "
                                              "on by no cell and tested on by none, used to select weights and "
                                              "settings (one sim per Re and validation seed)")
    val_seeds: list[int] = Field(default_factory=lambda: [500], description="perturbation seeds of the validation sims")
    test_reynolds: list[PositiveFloat] = Field(default_factory=list, description="Re of the held-out test sims")
    test_seeds: list[int] = Field(default_factory=lambda: [1000], description="perturbation seeds of the test sims")
    steps: int | None = Field(None, ge=1, description="default: the scene's (Karman 1500, plume 250)")
    keep_from: int = Field(0, ge=0, description="store the states after steps keep_from+1 .. steps")
    sims_per_task: int = Field(2, ge=1, description="sims that share one batched simulation (one array task)")
    frames_per_chunk: int = Field(50, ge=1, description="frames per zarr chunk (a chunk never spans two sims)")

    @model_validator(mode="after")
    def _consistent(self) -> "DatasetSpec":
        check_downsampling(self.resolution, self.factor)
        if self.keep_from >= self.n_steps:
            raise ValueError(f"keep_from ({self.keep_from}) must be below steps ({self.n_steps})")
        sims = self.sims()
        if len(set(sims)) != len(sims):
            raise ValueError("an (Re, seed) pair appears twice across the training, validation and test grids; "
                             "each sim belongs to one split")
        return self

    @property
    def n_steps(self) -> int:
        return self.steps if self.steps is not None else scene_info(self.scene).steps

    @property
    def n_frames(self) -> int:
        return self.n_steps - self.keep_from

    @property
    def low_resolution(self) -> tuple[int, int]:
        return self.resolution[0] // self.factor, self.resolution[1] // self.factor

    def _grids(self) -> list[list[tuple[float, int]]]:
        return [list(itertools.product(r, s)) for r, s in ((self.train_reynolds, self.train_seeds),
                                                           (self.val_reynolds, self.val_seeds),
                                                           (self.test_reynolds, self.test_seeds))]

    def sims(self) -> list[tuple[float, int]]:
        return [(float(r), int(s)) for grid in self._grids() for r, s in grid]

    def splits(self) -> list[int]:
        """Each sim's split, as an index into SPLITS (0 train, 1 validation, 2 test)."""
        return [code for code, grid in enumerate(self._grids()) for _ in grid]

    def is_test(self) -> list[bool]:
        return [code == 2 for code in self.splits()]

    def store_name(self, which: Literal["high", "low"]) -> str:
        ny, nx = self.resolution if which == "high" else self.low_resolution
        return store_name(self.scene, (ny, nx))

    def store_paths(self, data_dir: Path) -> tuple[Path, Path]:
        return data_dir / self.store_name("high"), data_dir / self.store_name("low")

    def task_groups(self) -> list[list[int]]:
        n = len(self.sims())
        return [list(range(i, min(i + self.sims_per_task, n))) for i in range(0, n, self.sims_per_task)]
