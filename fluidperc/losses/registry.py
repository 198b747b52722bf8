"""The one table of losses: what a sweep may name, how each is validated and built, which weight files it needs,
how small a field it takes, and whether it doubles as an evaluation metric.

A new loss is one file that calls :func:`register_loss` (torchvision's ``register_model`` is the model). Code
outside fluidperc registers the same way, from a module a sweep names under ``plugins:`` or from an installed
package's entry point in the group ``fluidperc.losses`` (loaded on first use of the table). docs/extending.md
has a worked example.

Builders are imported when a loss is built, never when the table is read: sweep validation and planning stay
free of torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel

from fluidperc.errors import UserError
from fluidperc.registry import Registry


@dataclass(frozen=True)
class LossEntry:
    """``spec``: a pydantic model with ``name: Literal[<name>]`` and a ``label`` property (extra keys
    forbidden). ``build``: ``"module:attr"`` or a callable ``(spec, stats, store) -> FieldLoss``. ``weights``:
    the weight-catalog names a spec needs. ``weight_files``: catalog entries the loss brings along
    (fluidperc.weights.WeightFile), so ``python -m fluidperc.weights fetch`` knows them. ``metric``: the spec it
    is evaluated with as a metric (stored under the loss's name), or None."""

    name: str
    spec: type[BaseModel]
    build: str | Callable[..., Any]
    weights: Callable[[Any], list[str]] = field(default=lambda spec: [])
    weight_files: tuple[Any, ...] = ()
    min_size: int = 1
    metric: dict[str, Any] | None = None
    description: str = ""

    def builder(self) -> Callable[..., Any]:
        if callable(self.build):
            return self.build
        module, _, attr = self.build.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj


ENTRY_POINT_GROUP = "fluidperc.losses"


def register_loss(entry: LossEntry) -> LossEntry:
    """Add a loss to the table (a second registration of the same name must be the same entry)."""
    fields = getattr(entry.spec, "model_fields", {})
    if "name" not in fields:
        raise UserError(f"loss '{entry.name}': its spec model {entry.spec.__name__} has no 'name' field")
    LOSSES.register(entry)
    if entry.weight_files:
        from fluidperc.weights import register_weight_file

        for w in entry.weight_files:
            register_weight_file(w)
    return entry


def losses() -> dict[str, LossEntry]:
    """Every registered loss: the built-in ones, installed plugins', and those of imported plugin modules."""
    return LOSSES.table()


def get_entry(name: str, where: str = "loss") -> LossEntry:
    return LOSSES.entry(name, where)


def metric_specs() -> dict[str, dict[str, Any]]:
    """Losses that double as evaluation metrics: metric name -> the spec it is computed with."""
    return {name: e.metric for name, e in losses().items() if e.metric is not None}


def _sum_weights(spec: Any) -> list[str]:
    """Every weight file any term needs: a sum is skipped or refused like the losses it holds."""
    names: list[str] = []
    for term in spec.terms:
        sub = term.spec
        names += [w for w in get_entry(sub.name).weights(sub) if w not in names]
    return names


def _builtin() -> None:
    from fluidperc.losses import spec as s

    pad = {"pad_to": [64, 64]}
    for entry in (
        LossEntry("mse", s.MSESpec, "fluidperc.losses.base:MSELoss.from_spec", description="mean squared error"),
        LossEntry("mae", s.MAESpec, "fluidperc.losses.base:MAELoss.from_spec", description="mean absolute error"),
        LossEntry("lsim", s.LSiMSpec, "fluidperc.losses.lsim:LSiMLoss", weights=lambda spec: ["lsim"], min_size=44,
                  metric={"name": "lsim", **pad}, description="LSiM (Kohl, Um, Thuerey 2020)"),
        LossEntry("vgg", s.VGGSpec, "fluidperc.losses.vgg:VGGLoss", weights=lambda spec: ["vgg16"], min_size=16,
                  metric={"name": "vgg", "layer": "relu3_3", **pad}, description="VGG-16 features (Johnson et al.)"),
        LossEntry("lpips", s.LPIPSSpec, "fluidperc.losses.lpips_loss:LPIPSLoss",
                  weights=lambda spec: [s.LPIPS_TRUNK[spec.net]], min_size=16,
                  metric={"name": "lpips", "net": "alex", **pad}, description="LPIPS (Zhang et al. 2018)"),
        LossEntry("sum", s.SumSpec, "fluidperc.losses.composite:SumLoss", weights=_sum_weights,
                  description="a weighted sum of other losses (mse + 0.1 * lsim)"),
    ):
        register_loss(entry)


LOSSES: Registry[LossEntry] = Registry("loss", ENTRY_POINT_GROUP, key=lambda e: e.name, describe=lambda e: str(e.build),
                                       builtin=_builtin)
