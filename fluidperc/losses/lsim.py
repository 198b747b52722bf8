"""LSiM (Kohl, Um, Thuerey, ICML 2020): a learned distance for flow fields, reimplemented from the paper's model.

``LSiM.load(path)`` reads the published LSiM.pth (a dict of stateDict, normAcc, normM2, normCount) with
``torch.load(weights_only=True)`` after a sha256 check; ``m(x, y)`` takes [N, 3, H, W] images in [0, 255] and
returns the N distances.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fluidperc.errors import UserError
from fluidperc.losses.base import PerceptualLoss
from fluidperc.provenance import sha256_of
from fluidperc.weights import CATALOG, WeightStore

CHANNELS = (32, 96, 192, 128, 128)
MIN_SIZE = 44  # 12x12 stride-4 conv, then two 4/2 max-pools: smaller inputs leave no feature map
STATS_SIZE = 224  # the normalisation statistics were collected at 224x224

# Published checkpoint key -> our module's key, spelled out so that a renamed layer fails loudly.
_KEYS = {
    "basenet.slice1.0.weight": "trunk.0.0.weight",
    "basenet.slice1.0.bias": "trunk.0.0.bias",
    "basenet.slice2.1.weight": "trunk.1.1.weight",
    "basenet.slice2.1.bias": "trunk.1.1.bias",
    "basenet.slice3.1.weight": "trunk.2.1.weight",
    "basenet.slice3.1.bias": "trunk.2.1.bias",
    "basenet.slice4.0.weight": "trunk.3.0.weight",
    "basenet.slice4.0.bias": "trunk.3.0.bias",
    "basenet.slice5.0.weight": "trunk.4.0.weight",
    "basenet.slice5.0.bias": "trunk.4.0.bias",
    **{f"lin{i}.1.weight": f"lins.{i}.weight" for i in range(5)},
}


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with a zero (not NaN) gradient at 0, so identical inputs do not poison training."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


class LSiM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(3, 32, 12, stride=4, padding=2), nn.ReLU()),
                nn.Sequential(nn.MaxPool2d(4, stride=2), nn.Conv2d(32, 96, 5, padding=2), nn.ReLU()),
                nn.Sequential(nn.MaxPool2d(4, stride=2), nn.Conv2d(96, 192, 3, padding=1), nn.ReLU()),
                nn.Sequential(nn.Conv2d(192, 128, 3, padding=1), nn.ReLU()),
                nn.Sequential(nn.Conv2d(128, 128, 3, padding=1), nn.ReLU()),
            ]
        )
        self.lins = nn.ModuleList([nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS])
        sizes = (55, 26, 12, 12, 12)
        for i, s in enumerate(sizes):
            self.register_buffer(f"norm_mean{i}", torch.zeros(s, s))
            self.register_buffer(f"norm_m2{i}", torch.ones(s, s))
        self.register_buffer("norm_count", torch.full((5,), 2.0, dtype=torch.float64))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def load(cls, path: str | Path, sha256: str | None = CATALOG["lsim"].sha256) -> "LSiM":
        path = Path(path)
        if sha256 is not None and sha256_of(path) != sha256:
            raise UserError(f"{path}: sha256 does not match the published LSiM.pth ({sha256}); refusing to load it")
        raw = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(raw, dict) or not {"stateDict", "normAcc", "normM2", "normCount"} <= raw.keys():
            raise UserError(f"{path}: not an LSiM checkpoint (expected keys stateDict, normAcc, normM2, normCount)")
        missing = sorted(set(_KEYS) - set(raw["stateDict"]))
        if missing:
            raise UserError(f"{path}: LSiM checkpoint lacks {missing}")
        model = cls()
        state = {ours: raw["stateDict"][theirs] for theirs, ours in _KEYS.items()}
        for i in range(5):
            state[f"norm_mean{i}"] = raw["normAcc"][i].float()
            state[f"norm_m2{i}"] = raw["normM2"][i].float()
            state[f"lins.{i}.weight"] = state[f"lins.{i}.weight"].clamp(min=0)  # the model keeps them >= 0
        state["norm_count"] = torch.tensor([float(c) for c in raw["normCount"]], dtype=torch.float64)
        model.load_state_dict(state)
        return model

    def _normalise(self, f: torch.Tensor, i: int) -> torch.Tensor:
        mean, m2 = getattr(self, f"norm_mean{i}"), getattr(self, f"norm_m2{i}")
        if mean.shape != f.shape[-2:]:
            pair = torch.stack([mean, m2])[None]
            mean, m2 = F.interpolate(pair, size=f.shape[-2:], mode="bilinear", align_corners=True)[0]
        std = torch.sqrt(m2 / (self.norm_count[i].to(m2.dtype) - 1))
        return (f - mean) / (std + 1e-10) / (math.sqrt(f.shape[1]) - 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise UserError(f"LSiM takes two [N, 3, H, W] images of one shape; got {list(x.shape)} and {list(y.shape)}")
        if min(x.shape[-2:]) < MIN_SIZE:
            raise UserError(f"LSiM needs images of at least {MIN_SIZE} px per side, got {x.shape[-2]}x{x.shape[-1]}")
        return self.compare(*(self._features(t) for t in (x, y)))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five normalised feature maps of [N, 3, H, W] images in [0, 255]."""
        out, h = [], x
        for i, block in enumerate(self.trunk):
            h = block(h)
            out.append(self._normalise(h, i))
        return out

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.requires_grad:
            return self.features(x)
        with torch.no_grad():  # no backward through an input that needs no gradient
            return self.features(x)

    def compare(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        total = fa[0].new_zeros(fa[0].shape[0])
        for lin, a, b in zip(self.lins, fa, fb):
            total = total + lin((a - b) ** 2).mean(dim=(1, 2, 3))
        return _safe_sqrt(total)


class LSiMLoss(PerceptualLoss):
    min_size = MIN_SIZE

    def __init__(self, spec, stats, store: WeightStore):
        super().__init__(spec, stats)
        self.model = LSiM.load(store.resolve("lsim"), sha256=None)  # the store verified the checksum
        self.model.trunk = self.adopt_trunk(self.model.trunk)

    def features(self, x):
        return self.model.features(x * 255.0)

    def compare(self, fa, fb):
        return self.model.compare(fa, fb)
