"""The built-in losses (MSE, MAE, LSiM, VGG-16 features, LPIPS, sums), registered as any plugin registers its
own (the table calls :func:`register_builtin` on first use). A new loss in the tree is one file with its module,
its spec in fluidperc.losses.spec, and one entry here."""

from __future__ import annotations

from typing import Any

from fluidperc.losses import spec as s
from fluidperc.losses.registry import LossEntry, get_entry, register_loss


def _sum_weights(spec: Any) -> list[str]:
    """Every weight file any term needs: a sum is skipped or refused like the losses it holds."""
    names: list[str] = []
    for term in spec.terms:
        sub = term.spec
        names += [w for w in get_entry(sub.name).weights(sub) if w not in names]
    return names


def register_builtin() -> None:
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

