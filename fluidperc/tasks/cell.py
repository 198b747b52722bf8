"""A training cell: one task x loss x resolution x seed, fully resolved (what a job receives, as JSON)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from fluidperc.datasets.names import grid_name, store_name
from fluidperc.losses import parse_loss_spec
from fluidperc.plugins import ImportsPluginsFirst, import_plugins
from fluidperc.sim.scenes import check_scene
from fluidperc.tasks import check_task, task_entry
from fluidperc.tasks.settings import TrainSettings


class CellConfig(ImportsPluginsFirst):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    plugins: tuple[str, ...] = Field((), description="modules imported before the rest is validated (they register "
                                     "losses, scenes, tasks); a job process validating the cell imports them too")
    task: Annotated[str, AfterValidator(check_task)] = Field(description="a registered task (ae, sr, sol, ...)")
    loss: Any
    scene: str = Field(description="a registered scene (karman, plume, ...), or with imported the name of an "
                       "imported dataset (its stores are named like a scene's)")
    imported: bool = Field(False, description="the stores were imported (datagen.imports), not simulated: no "
                           "solver, so no task that steps one")
    data_dir: str
    resolution: tuple[int, int] = Field(description="the low-resolution grid [ny, nx] the network works on")
    high_resolution: tuple[int, int] | None = Field(None, description="SR target grid")
    seed: int = 0
    settings: TrainSettings = Field(default_factory=TrainSettings)
    settings_source: str = Field("train.settings", description="where the settings came from (the report says)")

    @field_validator("plugins", mode="after")
    @classmethod
    def _plugins(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        import_plugins(v)
        return v

    @model_validator(mode="after")
    def _scene(self) -> "CellConfig":
        if not self.imported:
            check_scene(self.scene)
        elif task_entry(self.task).rollout:
            raise ValueError(f"task '{self.task}' steps the scene's solver and cannot train on the imported dataset "
                             f"'{self.scene}'")
        return self

    @field_validator("loss", mode="before")
    @classmethod
    def _loss(cls, v: Any) -> Any:
        return parse_loss_spec(v, where="loss").model_dump()

    @property
    def loss_spec(self):
        return parse_loss_spec(self.loss)

    @property
    def low_store(self) -> str:
        return store_name(self.scene, self.resolution)

    @property
    def high_store(self) -> str | None:
        if self.high_resolution is None:
            return None
        return store_name(self.scene, self.high_resolution)

    @property
    def label(self) -> str:
        ny, nx = self.resolution
        return f"{self.task}-{grid_name(self.scene, (ny, nx))}-{self.loss_spec.label}-s{self.seed}"
