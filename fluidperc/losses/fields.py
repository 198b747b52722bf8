"""Fields to images: ONE affine map per channel, shared by prediction and target, from dataset statistics.

Never min-max each tensor separately: a half-amplitude prediction would then look perfect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from fluidperc.errors import UserError


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel statistics over the training sims (the Zarr stores keep them in their attrs)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    min: tuple[float, ...]
    max: tuple[float, ...]

    @classmethod
    def from_tensor(cls, x: torch.Tensor) -> "ChannelStats":
        """Statistics of a reference tensor [N, C, H, W] (e.g. the training targets)."""
        flat = x.detach().transpose(0, 1).reshape(x.shape[1], -1).double()
        return cls(*(tuple(v.tolist()) for v in (flat.mean(1), flat.std(1), flat.min(1).values, flat.max(1).values)))

    @classmethod
    def from_attrs(cls, stats: Sequence[dict[str, float]]) -> "ChannelStats":
        """From a list of {mean, std, min, max} dicts, one per channel (the datasets' attrs layout)."""
        return cls(*(tuple(float(s[k]) for s in stats) for k in ("mean", "std", "min", "max")))

    def __len__(self) -> int:
        return len(self.mean)

    def bounds(self, value_range: str) -> tuple[torch.Tensor, torch.Tensor]:
        if value_range == "minmax":
            lo, hi = torch.tensor(self.min), torch.tensor(self.max)
        else:
            mean, std = torch.tensor(self.mean), torch.tensor(self.std)
            lo, hi = mean - 3 * std, mean + 3 * std
        span = hi - lo
        hi = torch.where(span > 0, hi, lo + 1.0)  # a constant channel maps to 0 rather than dividing by zero
        return lo, hi


def to_unit(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Map [N, C, H, W] channel c by (x - lo[c]) / (hi[c] - lo[c]); values outside the training range stay affine."""
    shape = (1, -1, 1, 1)
    return (x - lo.to(x).view(shape)) / (hi - lo).to(x).view(shape)


def pad_to(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Centred padding up to at least ``size``; sides already that large are left as they are, so one spec
    serves fields of several resolutions (64x32 -> 64x64, 128x64 unchanged)."""
    h, w = x.shape[-2:]
    th, tw = max(size[0], h), max(size[1], w)
    if (th, tw) == (h, w):
        return x
    top, left = (th - h) // 2, (tw - w) // 2
    pads = (left, tw - w - left, top, th - h - top)
    if mode == "reflect" and (max(pads[:2]) >= w or max(pads[2:]) >= h):
        raise UserError(f"reflect padding from {h}x{w} to {th}x{tw} needs pads smaller than the field; use replicate")
    return F.pad(x, pads, mode=mode)


def resize_to(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(x, size=tuple(size), mode=mode, **kwargs)
