"""The loss library: MSE, MAE, LSiM, VGG-16 features and LPIPS on [N, C, H, W] fields.

``get_loss(spec, stats)`` builds any of them from the spec a sweep file names. Perceptual losses map each field
channel to a 3-channel image with one affine map from the dataset statistics, shared by prediction and target.

Importing this package does not import torch: sweep validation and planning use only the specs and
``weights_needed``; the modules behind ``get_loss`` load on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluidperc.losses.registry import (
    LossEntry,
    get_entry,
    loss_names,
    losses,
    parse_loss_spec,
    register_loss,
)
from fluidperc.weights import FETCH_COMMAND, WeightStore

__all__ = ["ChannelStats", "FieldLoss", "LossEntry", "MissingWeights", "get_loss", "loss_names", "losses",
           "missing_weights", "parse_loss_spec", "register_loss", "weights_needed"]

_LAZY = {"ChannelStats": "fluidperc.losses.fields", "FieldLoss": "fluidperc.losses.base",
         "MSELoss": "fluidperc.losses.base", "MAELoss": "fluidperc.losses.base"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fluidperc.losses' has no attribute '{name}'")


def weights_needed(spec: Any) -> list[str]:
    """Catalog names of the weight files a loss spec needs (for preflight checks)."""
    spec = parse_loss_spec(spec)
    return list(get_entry(spec.name).weights(spec))


@dataclass(frozen=True)
class MissingWeights:
    """What a loss spec lacks in a weight store, said the same way by every preflight (train, tune, evaluation)."""

    label: str
    names: tuple[str, ...]  # catalog names
    files: tuple[str, ...]
    searched: tuple[str, ...]

    @property
    def fetch(self) -> str:
        return f"{FETCH_COMMAND} {' '.join(self.names)}"

    @property
    def short(self) -> str:
        return f"{', '.join(self.files)} missing; fetch it with `{self.fetch}`"


def missing_weights(spec: Any, store=None) -> MissingWeights | None:
    """None when every weight file the spec needs is in the store (default: the environment's), else what is
    missing and the command that fetches it."""
    spec = parse_loss_spec(spec)
    store = store or WeightStore.from_env()
    names = tuple(w for w in weights_needed(spec) if not store.present(w))
    if not names:
        return None
    return MissingWeights(spec.label, names, tuple(store.entry(w).filename for w in names),
                          tuple(str(d) for d in store.dirs))


def get_loss(spec: Any, stats=None, store=None):
    """Build a frozen loss module ``loss(pred, target) -> scalar`` from a spec (a name or a mapping)."""
    spec = parse_loss_spec(spec)
    entry = get_entry(spec.name)
    if store is None and entry.weights(spec):
        store = WeightStore.from_env()
    return entry.builder()(spec, stats, store)
