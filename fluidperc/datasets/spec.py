"""What a dataset is: a scene simulated at a high resolution over an (Re, seed) grid, downsampled by a factor."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from fluidperc.datasets.grids import Resolution, check_downsampling
from fluidperc.datasets.names import store_name
from fluidperc.sim.scenes import check_scene, scene_info


class DatasetSpec(BaseModel):
    """One high/low dataset pair. Sims are the training grid (reynolds x seeds) followed by the test grid."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    scene: Annotated[str, AfterValidator(check_scene)] = Field(description="a registered scene (karman, plume, ...)")
    resolution: Resolution = Field(description="high resolution [ny, nx]")
    factor: int = Field(2, ge=1, le=16, description="low resolution = high // factor")
    train_reynolds: list[PositiveFloat] = Field(min_length=1, description="Re of the training sims (one sim per Re and "
                                                "training seed)")
    train_seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="perturbation seeds of the "
                                   "training sims")
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
            raise ValueError("an (Re, seed) pair appears twice across the training and test grids")
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

    def sims(self) -> list[tuple[float, int]]:
        train = list(itertools.product(self.train_reynolds, self.train_seeds))
        test = list(itertools.product(self.test_reynolds, self.test_seeds))
        return [(float(r), int(s)) for r, s in train + test]

    def is_test(self) -> list[bool]:
        n_train = len(self.train_reynolds) * len(self.train_seeds)
        return [i >= n_train for i in range(len(self.sims()))]

    def store_name(self, which: Literal["high", "low"]) -> str:
        ny, nx = self.resolution if which == "high" else self.low_resolution
        return store_name(self.scene, (ny, nx))

    def store_paths(self, data_dir: Path) -> tuple[Path, Path]:
        return data_dir / self.store_name("high"), data_dir / self.store_name("low")

    def task_groups(self) -> list[list[int]]:
        n = len(self.sims())
        return [list(range(i, min(i + self.sims_per_task, n))) for i in range(0, n, self.sims_per_task)]
