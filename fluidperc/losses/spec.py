"""Loss specs: what sweep files name (``mse``, ``{name: vgg, layer: relu2_2}``, ...), validated strictly."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fluidperc.errors import UserError
from fluidperc.losses.registry import parse_loss_spec

VGG_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
LPIPS_NETS = ("alex", "vgg", "squeeze")
LPIPS_TRUNK = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}  # weight catalog names


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MSESpec(_Spec):
    name: Literal["mse"] = Field("mse", description="the loss")

    @property
    def label(self) -> str:
        return "mse"


class MAESpec(_Spec):
    name: Literal["mae"] = Field("mae", description="the loss")

    @property
    def label(self) -> str:
        return "mae"


class _ImageSpec(_Spec):
    """Shared by the perceptual losses: how fields become images and how small fields are made big enough."""

    value_range: Literal["minmax", "std"] = Field(
        "minmax", description="affine map from the dataset statistics: [min, max] or mean ± 3 std onto [0, 1]"
    )
    pad_to: tuple[int, int] | None = Field(None, description="pad fields (centred) up to at least [H, W]")
    pad_mode: Literal["replicate", "reflect", "constant"] = Field("replicate", description="how pad_to fills the border")
    resize_to: tuple[int, int] | None = Field(None, description="resize fields to [H, W] before the loss")
    resize_mode: Literal["bilinear", "bicubic", "nearest"] = Field("bilinear", description="how resize_to interpolates")
    precision: Literal["float32", "bfloat16"] = Field(
        "float32", description="bfloat16 runs the network under autocast: about 2x faster on CPUs with AVX512-BF16 "
        "or AMX and on GPUs, loss values within ~3% (features are compared in float32)"
    )

    @property
    def _suffix(self) -> str:
        """What sets this spec apart in its label: a resize (``-r224``: fields resized to 224x224, the
        reference regime of the ImageNet trunks and LSiM), bfloat16. Padding is the default policy and adds
        nothing (the study's v1 labels stay what they were)."""
        resize = ""
        if self.resize_to is not None:
            h, w = self.resize_to
            resize = f"-r{h}" if h == w else f"-r{h}x{w}"
        return resize + ("-bf16" if self.precision == "bfloat16" else "")

    @model_validator(mode="after")
    def _one_size_policy(self) -> "_ImageSpec":
        if self.pad_to is not None and self.resize_to is not None:
            raise ValueError("set pad_to or resize_to, not both")
        return self


class LSiMSpec(_ImageSpec):
    name: Literal["lsim"] = Field("lsim", description="the loss")

    @property
    def label(self) -> str:
        return "lsim" + self._suffix


class VGGSpec(_ImageSpec):
    name: Literal["vgg"] = Field("vgg", description="the loss")
    layer: Literal["relu1_2", "relu2_2", "relu3_3", "relu4_3"] = Field("relu3_3", description="the VGG-16 layer whose features are compared")
    layers: dict[Literal["relu1_2", "relu2_2", "relu3_3", "relu4_3"], float] | None = Field(
        None, description="weights over several layers; replaces `layer`"
    )

    @model_validator(mode="after")
    def _weights_positive(self) -> "VGGSpec":
        if self.layers is not None and (not self.layers or any(w < 0 for w in self.layers.values())):
            raise ValueError("layers needs at least one layer and non-negative weights")
        return self

    def layer_weights(self) -> dict[str, float]:
        return dict(self.layers) if self.layers else {self.layer: 1.0}

    @property
    def label(self) -> str:
        if self.layers:
            return "vgg-" + "+".join(f"{k}x{v:g}" for k, v in sorted(self.layers.items())) + self._suffix
        return f"vgg-{self.layer}{self._suffix}"


class LPIPSSpec(_ImageSpec):
    name: Literal["lpips"] = Field("lpips", description="the loss")
    net: Literal["alex", "vgg", "squeeze"] = Field("alex", description="the trunk LPIPS compares features of")

    @property
    def label(self) -> str:
        return f"lpips-{self.net}{self._suffix}"


class SumTerm(_Spec):
    weight: float = Field(ge=0, description="finite and >= 0")
    loss: Any = Field(description="any loss spec but a sum: a name or a mapping")

    @field_validator("loss", mode="before")
    @classmethod
    def _loss(cls, v: Any) -> Any:
        name = v if isinstance(v, str) else v.get("name") if isinstance(v, dict) else None
        if name == "sum":
            raise ValueError("a sum's terms cannot be sums themselves; list every term in one sum")
        try:
            return parse_loss_spec(v, where="term").model_dump()
        except UserError as err:  # pydantic puts the location in front
            raise ValueError(str(err).removeprefix("term: ")) from None

    @property
    def spec(self) -> Any:
        return parse_loss_spec(self.loss)

    @property
    def label(self) -> str:
        return self.spec.label if self.weight == 1 else f"{self.weight:g}*{self.spec.label}"


class SumSpec(_Spec):
    """A weighted sum of losses, as perceptual losses are used in practice: Johnson et al. add a pixel term to
    the feature loss; the LSiM authors train with MSE + lambda * LSiM. Its label is ``mse+0.1*lsim``."""

    name: Literal["sum"] = Field("sum", description="the loss")
    terms: tuple[SumTerm, ...] = Field(min_length=1, description="the weighted losses that are added up")

    @model_validator(mode="after")
    def _weights(self) -> "SumSpec":
        if not any(t.weight > 0 for t in self.terms):
            raise ValueError("at least one term needs a weight > 0")
        labels = [t.spec.label for t in self.terms]
        twice = sorted({lb for lb in labels if labels.count(lb) > 1})
        if twice:
            raise ValueError(f"term(s) {', '.join(twice)} appear more than once; add their weights instead")
        return self

    @property
    def label(self) -> str:
        return "+".join(t.label for t in self.terms)
