"""A sum's weight searched as a grid: ``{name: sum, terms: [{weight: 1.0, loss: mse}, {weight: [0, 0.01, 0.1],
loss: lsim}]}`` is one loss per value, a *family* labelled ``mse+λ*lsim``. The grid must hold 0 (the sum reduced
to its other terms), so that "the sum is no better" is measured, not assumed. Light: sweep validation uses it."""

from __future__ import annotations

import itertools
from typing import Any

from fluidperc.errors import UserError
from fluidperc.losses.registry import parse_loss_spec

MAX_VALUES = 16
LAMBDA = "λ"


def _grid_terms(loss: Any) -> list[int]:
    if not isinstance(loss, dict) or loss.get("name") != "sum" or not isinstance(loss.get("terms"), list):
        return []
    return [i for i, t in enumerate(loss["terms"]) if isinstance(t, dict) and isinstance(t.get("weight"), list)]


def expand_loss(loss: Any, where: str = "loss") -> list[tuple[str, Any]]:
    """(family label, plain loss spec) for each point of the loss's weight grid; a loss without a grid is its own
    family of one. A grid that lacks 0, repeats a value or holds more than MAX_VALUES is refused."""
    gridded = _grid_terms(loss)
    if not gridded:
        spec = parse_loss_spec(loss, where=where)
        return [(spec.label, spec.model_dump())]
    for i in gridded:
        values = loss["terms"][i]["weight"]
        w = f"{where}.terms.{i}.weight"
        if not values or len(values) > MAX_VALUES:
            raise UserError(f"{w}: a weight grid needs 1 to {MAX_VALUES} values, got {len(values)}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in values):
            raise UserError(f"{w}: {values!r}: every weight of a grid is a number >= 0")
        if len(set(values)) != len(values):
            raise UserError(f"{w}: {values!r} lists a weight twice")
        if 0 not in values:
            raise UserError(f"{w}: {values!r} lacks 0; a weight grid always holds 0 (the sum without this term), so "
                            "that 'the sum is no better' is measured, not assumed: add 0 to it")
    family_terms = [dict(t) for t in loss["terms"]]
    for i in gridded:
        family_terms[i]["weight"] = 1.0
    family = parse_loss_spec({**loss, "terms": family_terms}, where=where).label
    for i in gridded:  # the gridded term's label with its weight as λ: mse+λ*lsim
        label = parse_loss_spec(loss["terms"][i]["loss"], where=f"{where}.terms.{i}.loss").label
        family = family.replace(label, f"{LAMBDA}*{label}", 1) if f"{LAMBDA}*{label}" not in family else family
    out = []
    for values in itertools.product(*(loss["terms"][i]["weight"] for i in gridded)):
        terms = [dict(t) for t in loss["terms"]]
        for i, v in zip(gridded, values):
            terms[i]["weight"] = float(v)
        out.append((family, parse_loss_spec({**loss, "terms": terms}, where=where).model_dump()))
    return out


def expand_losses(losses: list[Any], where: str = "losses") -> list[tuple[str, Any]]:
    """Every listed loss, weight grids expanded, in order: (family label, spec)."""
    return [pair for i, loss in enumerate(losses) for pair in expand_loss(loss, where=f"{where}.{i}")]
