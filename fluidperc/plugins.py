"""Researchers' own code: modules a sweep names under ``plugins:`` are imported before the rest of the sweep is
validated, and again in every job that validates its arguments, so the losses, scenes and tasks they register
(fluidperc.losses.register_loss, fluidperc.sim.scenes.register_scene, fluidperc.tasks.register_task) are known
wherever they are used. Installed packages register through entry points instead (groups ``fluidperc.losses``,
``fluidperc.scenes``, ``fluidperc.tasks``)."""

from __future__ import annotations

import importlib

from fluidperc.errors import UserError


def import_plugins(modules: list[str] | tuple[str, ...], where: str = "plugins") -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise UserError(f"{where}: plugin module '{name}' cannot be imported ({err}); install it or put it on "
                            "PYTHONPATH") from None
