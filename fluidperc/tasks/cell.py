"""A training cell: one task x loss x resolution x seed, fully resolved (what a job receives, as JSON)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from fluidperc.datasets.names import grid_name, store_name
from fluidperc.errors import UserError
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
    variant: str = Field("", description="the point of train.grid this cell trains (e.g. lr=0.0003), part of its "
                         "label and of its loss row in the results; empty without a grid")
    loss_family: str = Field("", description="the weight grid the cell's loss is a point of (mse+λ*lsim), for the "
                             "selection on validation; empty for a loss without one")

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
    def loss_row(self) -> str:
        """The cell's row on the results' loss axis: its loss, and the grid point it trains when there is one."""
        return f"{self.loss_spec.label} {self.variant}" if self.variant else self.loss_spec.label

    @property
    def label(self) -> str:
        ny, nx = self.resolution
        variant = f"-{self.variant}" if self.variant else ""
        return f"{self.task}-{grid_name(self.scene, (ny, nx))}-{self.loss_spec.label}{variant}-s{self.seed}"

    def pack_key(self) -> str:
        """What cells must share to train as one computation (one job, fluidperc.train.pack): everything but
        the fields in :data:`PER_CELL`."""
        fields = self.model_dump(mode="json")
        for name in PER_CELL:
            owner = fields
            *path, last = name.split(".")
            for part in path:
                owner = owner[part]
            owner.pop(last)
        return json.dumps(fields, sort_keys=True)


# What may differ between the cells of one pack: each keeps its own initialisation and batches (seed), loss,
# learning rate and Adam state. The rest (task, data, grids, architecture, batch size, unroll, steps, ...) is
# one computation.
PER_CELL = ("seed", "loss", "settings.lr", "settings_source", "variant", "loss_family")


def pack_differences(a: CellConfig, b: CellConfig) -> list[str]:
    """The settings in which two cells differ that keep them from sharing a job (dotted keys)."""
    fa, fb = json.loads(a.pack_key()), json.loads(b.pack_key())
    out = []

    def walk(x: Any, y: Any, where: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                walk(x.get(key), y.get(key), f"{where}.{key}" if where else key)
        elif x != y:
            out.append(where)

    walk(fa, fb, "")
    return out


def check_pack(cells: list[CellConfig]) -> None:
    """Refuse, in one paragraph, cells that cannot train as one computation."""
    if len(cells) < 2:
        return
    first = cells[0]
    if not task_entry(first.task).packs:
        raise UserError(f"task '{first.task}' does not say how to train several cells at once (its entry has no "
                        f"packs=True and build_net), so {len(cells)} of its cells cannot share a job; set "
                        "train.cells_per_task: 1")
    labels = [c.label for c in cells]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise UserError(f"a pack names cell {', '.join(twice)} twice; each cell trains once")
    for other in cells[1:]:
        diff = pack_differences(first, other)
        if diff:
            raise UserError(f"cells {first.label} and {other.label} differ in {', '.join(diff)}, so they cannot "
                            f"train as one computation; the cells of a pack may differ only in "
                            f"{', '.join(PER_CELL[:3])}")
