"""The loss library: MSE, MAE, LSiM, VGG-16 features and LPIPS on [N, C, H, W] fields.

``get_loss(spec, stats)`` builds any of them from the spec a sweep file names. Perceptual losses map each field
channel to a 3-channel image with one affine map from the dataset statistics, shared by prediction and target.
"""

from __future__ import annotations

from typing import Any

from fluidperc.losses.base import FieldLoss, MAELoss, MSELoss
from fluidperc.losses.fields import ChannelStats
from fluidperc.losses.spec import LOSS_NAMES, parse_loss_spec
from fluidperc.weights import WeightStore

__all__ = ["ChannelStats", "FieldLoss", "LOSS_NAMES", "get_loss", "parse_loss_spec", "weights_needed"]


def weights_needed(spec: Any) -> list[str]:
    """Catalog names of the weight files a loss spec needs (for preflight checks)."""
    spec = parse_loss_spec(spec)
    if spec.name == "lsim":
        return ["lsim"]
    if spec.name == "vgg":
        return ["vgg16"]
    if spec.name == "lpips":
        from fluidperc.losses.lpips_loss import TRUNK_FILE

        return [TRUNK_FILE[spec.net]]
    return []


def get_loss(spec: Any, stats: ChannelStats | None = None, store: WeightStore | None = None) -> FieldLoss:
    """Build a frozen loss module ``loss(pred, target) -> scalar`` from a spec (a name or a mapping)."""
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
