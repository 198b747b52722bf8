"""Search spaces as sweep files write them, checked completely before Ray starts, then turned into Tune domains.

A value is either fixed (``lr: 1.0e-3``) or one of these one-key mappings:

    {choice: [a, b, ...]}     sampled uniformly          {grid: [a, b, ...]}   every option (x num_samples)
    {loguniform: [lo, hi]}    lo > 0                     {uniform: [lo, hi]}
    {randint: [lo, hi]}       integers lo..hi, both included

Loss specs may hold domains in their own fields (``{name: vgg, layers: {relu2_2: {uniform: [0, 1]}}}``), which is
how layer weights are tuned, and so may the terms of a sum (``{name: sum, terms: [{weight: 1, loss: mse},
{weight: {loguniform: [1.0e-3, 1]}, loss: lsim}]}``); options of a choice or grid are concrete values.
"""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import ValidationError

from fluidperc.errors import UserError
from fluidperc.losses import parse_loss_spec
from fluidperc.tasks.settings import TrainSettings

DOMAINS = ("choice", "grid", "loguniform", "uniform", "randint")
# Settings the tune stage sets itself (per-trial length and reporting, the validation split).
MANAGED = ("steps", "validate_every", "checkpoint_every", "val_sims", "val_rollout")
TUNABLE = ("loss", *(k for k in TrainSettings.model_fields if k not in MANAGED))
MAX_CORNERS = 512


def domain_kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DOMAINS:
        return next(iter(value))
    return None


def grid_points(value: Any) -> int:
    """How many points the grids in a value span (grids nested in a loss spec's dicts and lists included): Tune
    runs every combination."""
    if domain_kind(value) == "grid":
        return len(value["grid"])
    if domain_kind(value):
        return 1
    n = 1
    for item in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        n *= grid_points(item)
    return n


def has_domain(value: Any) -> bool:
    if domain_kind(value):
        return True
    if isinstance(value, dict):
        return any(has_domain(v) for v in value.values())
    if isinstance(value, list):
        return any(has_domain(v) for v in value)
    return False


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_domain(kind: str, args: Any, where: str) -> None:
    if kind in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            raise UserError(f"{where}: {{{kind}: ...}} needs a non-empty list of options, got {args!r}")
        nested = [a for a in args if has_domain(a)]
        if nested:
            raise UserError(f"{where}: options of {kind} must be concrete values, got a domain inside {nested[0]!r}")
        return
    if not (isinstance(args, list) and len(args) == 2 and all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                                                for a in args)):
        hint = ""
        if isinstance(args, list) and any(isinstance(a, str) and _is_number(a) for a in args):
            hint = " (YAML reads a number like 1e-4 as text; write 1.0e-4)"
        raise UserError(f"{where}: {{{kind}: [lo, hi]}} needs two numbers, got {args!r}{hint}")
    lo, hi = args
    if not lo < hi:
        raise UserError(f"{where}: {{{kind}: [{lo}, {hi}]}} needs lo < hi")
    if kind == "loguniform" and lo <= 0:
        raise UserError(f"{where}: {{loguniform: [{lo}, {hi}]}} needs lo > 0")
    if kind == "randint" and not (isinstance(lo, int) and isinstance(hi, int)):
        raise UserError(f"{where}: {{randint: [{lo}, {hi}]}} needs integers")


def corners(value: Any, where: str) -> list[Any]:
    """Concrete values that span the space of ``value`` (every option; both ends of a range), for validation."""
    kind = domain_kind(value)
    if kind:
        args = value[kind]
        _check_domain(kind, args, where)
        return list(args)
    if isinstance(value, dict):
        keys = list(value)
        per_key = [corners(value[k], f"{where}.{k}") for k in keys]
        combos = itertools.islice(itertools.product(*per_key), MAX_CORNERS)
        return [dict(zip(keys, combo)) for combo in combos]
    if isinstance(value, list):  # a sum's terms: {name: sum, terms: [{weight: {loguniform: [...]}, loss: lsim}]}
        per_item = [corners(v, f"{where}.{i}") for i, v in enumerate(value)]
        return [list(combo) for combo in itertools.islice(itertools.product(*per_item), MAX_CORNERS)]
    return [value]


def validate_space(space: dict[str, Any], where: str = "tune.space") -> None:
    """Raise UserError (naming the key and value) unless every value the space can produce is valid."""
    if not space:
        raise UserError(f"{where}: the search space is empty; name at least one of {', '.join(TUNABLE)}")
    for key, value in space.items():
        here = f"{where}.{key}"
        if key in MANAGED:
            raise UserError(f"{here}: '{key}' is set by the tune stage itself (epochs, epoch_steps, val_sims, "
                            "val_rollout); it cannot be searched")
        if key not in TUNABLE:
            raise UserError(f"{here}: unknown hyper-parameter '{key}'; expected one of {', '.join(TUNABLE)}")
        for option in corners(value, here):
            if key == "loss":
                parse_loss_spec(option, where=here)
            else:
                try:
                    TrainSettings.model_validate({key: option})
                except ValidationError as err:
                    msg = err.errors()[0]["msg"]
                    raise UserError(f"{here}: value {option!r} is not a valid {key}: {msg}") from None


def loss_options(space: dict[str, Any], fixed_loss: Any) -> list[Any]:
    """Every concrete loss spec the space can produce (for the weights check before anything starts)."""
    if "loss" not in space:
        return [fixed_loss]
    return corners(space["loss"], "tune.space.loss")


def to_ray(value: Any) -> Any:
    """The same space as Ray Tune domains (imports ray only here, after validation)."""
    from ray import tune

    kind = domain_kind(value)
    if kind == "choice":
        return tune.choice(value[kind])
    if kind == "grid":
        return tune.grid_search(value[kind])
    if kind == "loguniform":
        return tune.loguniform(*value[kind])
    if kind == "uniform":
        return tune.uniform(*value[kind])
    if kind == "randint":
        lo, hi = value[kind]
        return tune.randint(lo, hi + 1)
    if isinstance(value, dict):
        return {k: to_ray(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_ray(v) for v in value]
    return value
