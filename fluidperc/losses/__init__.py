"""The loss library: MSE, MAE, LSiM, VGG-16 features and LPIPS on [N, C, H, W] fields.

``get_loss(spec, stats)`` builds any of them from the spec a sweep file names. Perceptual losses map each field
channel to a 3-channel image with one affine map from the dataset statistics, shared by prediction and target.

Importing this package does not import torch: sweep validation and planning use only the specs and
``weights_needed``; the modules behind ``get_loss`` load on first use.
"""

from __future__ import annotations

from typing import Any

from fluidperc.losses.registry import LossEntry, get_entry, losses, register_loss
from fluidperc.losses.spec import loss_names, parse_loss_spec

__all__ = ["ChannelStats", "FieldLoss", "LossEntry", "get_loss", "loss_names", "losses", "parse_loss_spec",
           "register_loss", "weights_needed"]

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


def get_loss(spec: Any, stats=None, store=None):
    """Build a frozen loss module ``loss(pred, target) -> scalar`` from a spec (a name or a mapping)."""
    from fluidperc.weights import WeightStore

    spec = parse_loss_spec(spec)
    entry = get_entry(spec.name)
    if store is None and entry.weights(spec):
        store = WeightStore.from_env()
    return entry.builder()(spec, stats, store)
