"""The loss library: MSE, MAE, LSiM, VGG-16 features and LPIPS on [N, C, H, W] fields.

``get_loss(spec, stats)`` builds any of them from the spec a sweep file names. Perceptual losses map each field
channel to a 3-channel image with one affine map from the dataset statistics, shared by prediction and target.

Importing this package does not import torch: sweep validation and planning use only the specs and
``weights_needed``; the modules behind ``get_loss`` load on first use.
"""

from __future__ import annotations

from typing import Any

from fluidperc.losses.spec import LOSS_NAMES, LPIPS_TRUNK, parse_loss_spec

__all__ = ["ChannelStats", "FieldLoss", "LOSS_NAMES", "get_loss", "parse_loss_spec", "weights_needed"]

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
    if spec.name == "lsim":
        return ["lsim"]
    if spec.name == "vgg":
        return ["vgg16"]
    if spec.name == "lpips":
        return [LPIPS_TRUNK[spec.net]]
    return []


def get_loss(spec: Any, stats=None, store=None):
    """Build a frozen loss module ``loss(pred, target) -> scalar`` from a spec (a name or a mapping)."""
    from fluidperc.losses.base import MAELoss, MSELoss
    from fluidperc.weights import WeightStore

    spec = parse_loss_spec(spec)
    if spec.name == "mse":
        return MSELoss()
    if spec.name == "mae":
        return MAELoss()
    store = store or WeightStore.from_env()
    if spec.name == "lsim":
        from fluidperc.losses.lsim import LSiMLoss

        return LSiMLoss(spec, stats, store)
    if spec.name == "vgg":
        from fluidperc.losses.vgg import VGGLoss

        return VGGLoss(spec, stats, store)
    from fluidperc.losses.lpips_loss import LPIPSLoss

    return LPIPSLoss(spec, stats, store)
