"""Researchers' own code: modules a sweep names under ``plugins:`` are imported before the rest of the sweep is
validated, and again in every job that validates its arguments, so the losses, scenes and tasks they register
(fluidperc.losses.register_loss, fluidperc.sim.scenes.register_scene, fluidperc.tasks.register_task) are known
wherever they are used. Installed packages register through entry points instead (groups ``fluidperc.losses``,
``fluidperc.scenes``, ``fluidperc.tasks``)."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel, model_validator

from fluidperc.errors import UserError


def import_plugins(modules: list[str] | tuple[str, ...], where: str = "plugins") -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise UserError(f"{where}: plugin module '{name}' cannot be imported ({err}); install it or put it on "
                            "PYTHONPATH") from None


def import_plugins_first(data: Any) -> Any:
    """A pydantic ``model_validator(mode="before")`` body: import the modules a raw mapping names under
    ``plugins`` before any field is validated, so that fields naming a plugin's loss, scene or task validate
    whatever the models' field order. Malformed or failing entries are left to the ``plugins`` field's own
    validator, which reports them at their key."""
    names = data.get("plugins") if isinstance(data, dict) else None
    if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
        try:
            import_plugins(names)
        except UserError:
            pass  # raised again, with its key, by the field's validator
    return data


class ImportsPluginsFirst(BaseModel):
    """A model whose ``plugins`` field names modules to import before any other field is validated (the sweep, a
    cell): its fields may then name what those plugins register, in whatever order they are declared."""

    @model_validator(mode="before")
    @classmethod
    def _plugins_first(cls, data: Any) -> Any:
        return import_plugins_first(data)
