"""VGG-16 feature loss (Johnson et al.): mean squared difference of ImageNet VGG-16 activations at chosen layers.

Only the convolutional trunk up to the deepest chosen layer is built and loaded, from torchvision's
``vgg16-397923af.pth`` found by the weight resolver (``features.*`` keys; the classifier is never needed).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from fluidperc.errors import UserError
from fluidperc.losses.base import PerceptualLoss
from fluidperc.weights import WeightStore

LAYER_INDEX = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}  # in torchvision's vgg16().features
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_vgg16_features(path: Path, upto: int) -> nn.Sequential:
    """VGG-16 ``features[: upto + 1]`` with weights from a torchvision checkpoint (weights_only load)."""
    trunk = make_layers(cfgs["D"])[: upto + 1]
    state = torch.load(path, map_location="cpu", weights_only=True)
    wanted = {k: state.get(f"features.{k}") for k in trunk.state_dict()}
    missing = [f"features.{k}" for k, v in wanted.items() if v is None]
    if missing:
        raise UserError(f"{path}: not a torchvision VGG-16 checkpoint; it lacks {missing[:3]}")
    trunk.load_state_dict(wanted)
    return trunk.eval().requires_grad_(False)


class VGGLoss(PerceptualLoss):
    min_size = 16

    def __init__(self, spec, stats, store: WeightStore):
        super().__init__(spec, stats)
        self.weights = spec.layer_weights()
        self.taps = {LAYER_INDEX[name]: w for name, w in self.weights.items()}
        self.trunk = self.adopt_trunk(load_vgg16_features(store.resolve("vgg16"), max(self.taps)))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def features(self, x):
        h, out = (x - self.mean) / self.std, []
        for i, layer in enumerate(self.trunk):
            h = layer(h)
            if i in self.taps:
                out.append(h)
        return out

    def compare(self, fa, fb):
        total = fa[0].new_zeros(fa[0].shape[0])
        for w, a, b in zip((self.taps[i] for i in sorted(self.taps)), fa, fb):
            total = total + w * ((a - b) ** 2).mean(dim=(1, 2, 3))
        return total
