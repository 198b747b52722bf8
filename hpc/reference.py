"""python -m hpc.reference: every key a sweep file may hold, with its type, default, bounds and description,
generated from the pydantic models the launcher validates with (the docs site's sweep reference is this output),
so the reference cannot drift from what a launch accepts. The loss specs come from the loss table, plugins' too."""

from __future__ import annotations

import argparse
import json
import types
import typing
from typing import Any, Literal

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from fluidperc.losses import losses
from fluidperc.plugins import import_plugins
from hpc.errors import run_cli
from hpc.spec import Sweep


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (inside lists, dicts, unions)."""
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_in(arg)]


def sections(root: type[BaseModel] = Sweep) -> list[tuple[type[BaseModel], list[str]]]:
    """Every model reachable from ``root`` in the order a reader meets them, with the keys it sits under."""
    order: list[type[BaseModel]] = []
    where: dict[type[BaseModel], list[str]] = {}

    def visit(model: type[BaseModel], key: str) -> None:
        if model in where:
            where[model].append(key)
            return
        order.append(model)
        where[model] = [key]
        for name, field in model.model_fields.items():
            for sub in models_in(field.annotation):
                nested = _strip(field.annotation)
                suffix = ".<name>" if typing.get_origin(nested) is dict else ".<i>" if typing.get_origin(nested) is list else ""
                visit(sub, f"{key}.{name}{suffix}" if key else f"{name}{suffix}")

    visit(root, "")
    return [(m, where[m]) for m in order]


def anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def type_name(annotation: Any) -> str:
    annotation = _strip(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{anchor(annotation)})"
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(type_name(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "defaults below" if isinstance(value, BaseModel) else f"`{json.dumps(value)}`"
    if field.default is PydanticUndefined:
        return "**required**"
    value = field.default
    return f"`{json.dumps(value.model_dump() if isinstance(value, BaseModel) else value)}`"


BOUNDS = ((at.Ge, "ge", ">="), (at.Gt, "gt", ">"), (at.Le, "le", "<="), (at.Lt, "lt", "<"),
          (at.MinLen, "min_length", "at least {} item(s)"), (at.MaxLen, "max_length", "at most {} item(s)"))


def bounds_text(field: FieldInfo) -> str:
    out = []
    for meta in field.metadata:
        for kind, attr, sign in BOUNDS:
            if isinstance(meta, kind):
                value = getattr(meta, attr)
                out.append(sign.format(value) if "{}" in sign else f"{sign} {value}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            out.append(f"matches `{pattern}`")
    return ", ".join(out)


def table(model: type[BaseModel]) -> list[str]:
    rows = ["| key | type | default | what |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        what = (field.description or "").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        bounds = bounds_text(field)
        rows.append(f"| `{name}` | {type_name(field.annotation)} | {default_text(field)} | "
                    f"{what}{' (' + bounds + ')' if bounds else ''} |")
    return rows


def _doc(model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split()) if doc else ""


def markdown(plugins: tuple[str, ...] = ()) -> str:
    import_plugins(plugins)
    out: list[str] = []
    for model, keys in sections():
        title = model.__name__
        under = ", ".join(f"`{k}`" for k in keys if k) or "the top level of a sweep file"
        out += [f"### {title} {{#{anchor(model)}}}", "", f"Under {under}. {_doc(model)}".rstrip(), "", *table(model), ""]
    out += ["## Loss specs", "",
            "Wherever a sweep names a loss (`train.losses`, `tune.loss`, `tune.space.loss`, a sum's terms), it gives "
            "a name (`mse`) or a mapping with the name and options. Each registered loss validates its own options:",
            ""]
    for name, entry in losses().items():
        spec = entry.spec
        out += [f"### `{name}` {{#loss-{name}}}", "", f"{entry.description or _doc(spec)}.".replace("..", "."), "",
                *table(spec), ""]
        for sub, keys in sections(spec)[1:]:  # models inside a spec (a sum's terms)
            under = ", ".join(f"`{k}`" for k in keys)
            out += [f"### {sub.__name__} {{#{anchor(sub)}}}", "", f"Under {under} of a `{name}`. {_doc(sub)}".rstrip(),
                    "", *table(sub), ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hpc.reference", description="Print every key a sweep file may hold "
                                "(type, default, bounds, description) as Markdown, from the models the launcher "
                                "validates with.")
    p.add_argument("--plugins", nargs="*", default=[], help="modules to import first, so that their losses appear")
    args = p.parse_args(argv)
    print(markdown(tuple(args.plugins)), end="")
    return 0


if __name__ == "__main__":
    run_cli(main, "hpc.reference")
