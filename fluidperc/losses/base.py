"""The loss interface every task uses: ``loss(pred, target) -> scalar`` on [N, C, H, W] fields.

Each channel is its own scalar field and the loss is the sum over channels, F(X, X̂) + F(Y, Ŷ) for a velocity.
Staggered components differ in shape, so :meth:`FieldLoss.staggered` takes them one at a time.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from fluidperc.errors import UserError
from fluidperc.losses.fields import ChannelStats, pad_to, resize_to, to_unit


class FieldLoss(nn.Module):
    label = "loss"

    @classmethod
    def from_spec(cls, spec=None, stats=None, store=None) -> "FieldLoss":
        """The registry's builder for losses that need neither statistics nor weights."""
        return cls()

    def forward(self, pred: torch.Tensor, target: torch.Tensor, channels: Sequence[int] | None = None) -> torch.Tensor:
        raise NotImplementedError

    def per_sample(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of each sample [N], whose mean is :meth:`forward`'s value: a packed job (fluidperc.train.pack)
        gives the cells that share a loss one call on all their samples. A loss without it is called once per
        cell on that cell's samples instead."""
        raise NotImplementedError

    def staggered(self, pred: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
        """Sum of per-component losses for components of different shapes, each [N, 1, H_i, W_i]."""
        total = pred[0].new_zeros(())
        for i, (p, t) in enumerate(zip(pred, target, strict=True)):
            total = total + self(p, t, channels=[i])
        return total

    def train(self, mode: bool = True) -> "FieldLoss":
        return super().train(False)  # frozen: never dropout/batch-norm updates, whatever the caller sets


def _check_shapes(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise UserError(f"loss inputs must both be [N, C, H, W] of one shape; got {list(pred.shape)} and {list(target.shape)}")


class MSELoss(FieldLoss):
    label = "mse"

    def forward(self, pred, target, channels=None):
        _check_shapes(pred, target)
        return ((pred - target) ** 2).mean(dim=(0, 2, 3)).sum()

    def per_sample(self, pred, target):
        _check_shapes(pred, target)
        return ((pred - target) ** 2).mean(dim=(2, 3)).sum(dim=1)


class MAELoss(FieldLoss):
    label = "mae"

    def forward(self, pred, target, channels=None):
        _check_shapes(pred, target)
        return (pred - target).abs().mean(dim=(0, 2, 3)).sum()

    def per_sample(self, pred, target):
        _check_shapes(pred, target)
        return (pred - target).abs().mean(dim=(2, 3)).sum(dim=1)


class PerceptualLoss(FieldLoss):
    """Fields -> shared affine map onto [0, 1] -> pad/resize -> 3-channel images -> a trained network's distance."""

    min_size = 1

    def __init__(self, spec, stats: ChannelStats | None):
        super().__init__()
        if stats is None:
            raise UserError(
                f"loss '{spec.label}' needs the dataset statistics (mean/std/min/max per channel) to map fields onto "
                "images with one affine map for prediction and target; pass stats=ChannelStats(...)"
            )
        self.spec = spec
        self.label = spec.label
        lo, hi = stats.bounds(spec.value_range)
        self.register_buffer("lo", lo, persistent=False)
        self.register_buffer("hi", hi, persistent=False)
        size = spec.pad_to or spec.resize_to
        if size is not None and min(size) < self.min_size:
            raise UserError(f"loss '{self.label}': the target size {list(size)} is below its minimum of {self.min_size} px per side")

    def adopt_trunk(self, trunk: nn.Module) -> nn.Module:
        """The convolutional trunk in channels-last layout, oneDNN's own: no reorder around every layer, up to 18%
        faster per loss call on CPU. Inputs follow in :meth:`_features`. Under ``precision: bfloat16`` its
        weights are cast once here: autocast would recast frozen weights on every call (3-17% of an LPIPS-vgg
        call). Measurements in BENCHMARKS.md."""
        trunk = trunk.to(memory_format=torch.channels_last)
        return trunk.to(torch.bfloat16) if self.spec.precision == "bfloat16" else trunk

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.pad_to is not None:
            x = pad_to(x, self.spec.pad_to, self.spec.pad_mode)
        elif self.spec.resize_to is not None:
            x = resize_to(x, self.spec.resize_to, self.spec.resize_mode)
        h, w = x.shape[-2:]
        if min(h, w) < self.min_size:
            raise UserError(
                f"loss '{self.label}' needs fields of at least {self.min_size} px per side, got {h}x{w}; "
                f"set pad_to (e.g. [{max(h, self.min_size)}, {max(w, self.min_size)}]) or resize_to in the loss spec"
            )
        return x

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The network's features of [M, 3, H, W] images in [0, 1]."""
        raise NotImplementedError

    def compare(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        """Per-image distance [M] from two images' features."""
        raise NotImplementedError

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-image distance [M] between [M, 3, H, W] images in [0, 1]. An input that needs no gradient (the
        target, in training) goes through the network without autograd: its backward pass would be wasted."""
        return self.compare(*(self._features(x) for x in (a, b)))

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        low = self.spec.precision == "bfloat16"
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=low), torch.set_grad_enabled(
                x.requires_grad and torch.is_grad_enabled()):
            feats = self.features(x)
        return [f.float() for f in feats] if low else feats

    def forward(self, pred, target, channels=None):
        return self._per_sample(pred, target, channels).mean()

    def per_sample(self, pred, target):
        return self._per_sample(pred, target, None)

    def _per_sample(self, pred, target, channels):
        _check_shapes(pred, target)
        idx = list(channels) if channels is not None else list(range(pred.shape[1]))
        if len(idx) != pred.shape[1] or max(idx) >= len(self.lo):
            raise UserError(f"loss '{self.label}': {pred.shape[1]} channel(s) given but statistics for {len(self.lo)}")
        lo, hi = self.lo[idx], self.hi[idx]
        n, c = pred.shape[:2]
        p, t = (self.prepare(to_unit(x, lo, hi)) for x in (pred, target))
        p, t = (x.reshape(n * c, 1, *x.shape[-2:]).expand(-1, 3, -1, -1) for x in (p, t))
        return self.distance(p, t).view(n, c).sum(dim=1)
