"""The one table of losses: what a sweep may name, how each is validated and built, which weight files it needs,
how small a field it takes, and whether it doubles as an evaluation metric.

A new loss is one file that calls :func:`register_loss` (torchvision's ``register_model`` is the model). Code
outside fluidperc registers the same way, from a module a sweep names under ``plugins:`` or from an installed
package's entry point in the group ``fluidperc.losses`` (loaded on first use of the table). docs/extending.md
has a worked example.

The built-in losses are registered by fluidperc.losses.builtin on first use of the table. Builders are
imported when a loss is built, never when the table is read: sweep validation and planning stay free of torch.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from fluidperc.errors import UserError
from fluidperc.registry import Registry, resolve
from fluidperc.weights import register_weight_file


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
        """The build callable, checked against the ``(spec, stats, store)`` call a plugin's author most often gets
        wrong (a FieldLoss class whose ``__init__`` takes no spec), so the error names the loss, not torch."""
        where = self.build if isinstance(self.build, str) else getattr(self.build, "__qualname__", repr(self.build))
        try:
            build = self.build if callable(self.build) else resolve(self.build)
        except (ImportError, AttributeError) as err:
            raise UserError(f"loss '{self.name}': its build '{where}' cannot be imported ({type(err).__name__}: "
                            f"{err}); a LossEntry's build is 'module:attr' or a callable") from None
        problem = _cannot_take_three(build)
        if problem:
            raise UserError(f"loss '{self.name}': its build '{where}' cannot be called as build(spec, stats, store) "
                            f"({problem}); a LossEntry's build takes those three arguments and returns the loss "
                            "module, as a FieldLoss subclass's from_spec does") from None
        return build


def _cannot_take_three(build: Callable[..., Any]) -> str:
    """Why ``build(spec, stats, store)`` cannot bind, or "". A torch module class that keeps nn.Module's
    ``__init__(*args, **kwargs)`` looks as if it took anything, and takes nothing."""
    if inspect.isclass(build):
        owner = next((c for c in build.__mro__ if "__init__" in c.__dict__), object)
        if (owner.__module__, owner.__name__) == ("torch.nn.modules.module", "Module"):
            return f"{build.__name__}() takes no arguments: its __init__ is torch.nn.Module's"
    try:
        inspect.signature(build).bind(None, None, None)
    except TypeError as err:
        return str(err)
    except ValueError:  # no signature to read (a builtin): the call itself will say
        pass
    return ""


ENTRY_POINT_GROUP = "fluidperc.losses"


def register_loss(entry: LossEntry) -> LossEntry:
    """Add a loss to the table (a second registration of the same name must be the same entry)."""
    fields = getattr(entry.spec, "model_fields", {})
    if "name" not in fields:
        raise UserError(f"loss '{entry.name}': its spec model {entry.spec.__name__} has no 'name' field")
    LOSSES.register(entry)
    if entry.weight_files:
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


LOSSES: Registry[LossEntry] = Registry("loss", ENTRY_POINT_GROUP, key=lambda e: e.name, describe=lambda e: str(e.build),
                                       builtin="fluidperc.losses.builtin:register_builtin")


def loss_names() -> tuple[str, ...]:
    """Every loss a sweep may name (fluidperc.losses.registry: built-in, installed plugins, imported modules)."""
    return tuple(losses())


def parse_loss_spec(spec: Any, where: str = "loss") -> Any:
    """A name ('lsim') or a mapping ({name: vgg, layer: relu2_2}) -> a validated spec; errors list valid choices."""
    if isinstance(spec, BaseModel) and getattr(spec, "name", None) in losses():
        return spec
    data = {"name": spec} if isinstance(spec, str) else spec
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        name = data.get("name") if isinstance(data, dict) else data
        raise UserError(f"{where}: unknown loss {name!r}; expected one of {', '.join(losses())}")
    model = get_entry(data["name"], where).spec
    try:
        return model.model_validate(data)
    except ValidationError as err:
        valid = ", ".join(k for k in model.model_fields if k != "name") or "none"
        errors = err.errors()
        if any(e["type"] != "too_short" for e in errors):  # pydantic adds "too short" to a list with a bad item
            errors = [e for e in errors if e["type"] != "too_short"]
        problems = "; ".join(
            (f"{'.'.join(str(p) for p in e['loc'])}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
            for e in errors
        )
        raise UserError(f"{where}: invalid options for loss '{data['name']}' ({problems}); valid options: {valid}") from None
