"""Johnson et al.'s image transformation network adapted to upscaling (super-resolution).

9x9 conv, five residual blocks with instance norm, log2(scale) upsample-conv stages (nearest x2 then a 3x3
conv; never transposed convolutions, which leave checkerboard artifacts), and a final 9x9 conv.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _conv(cin: int, cout: int, k: int) -> nn.Module:
    return nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True), nn.ReLU(),
            _conv(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TransformNet(nn.Module):
    def __init__(self, in_channels: int, out_channels: int | None = None, scale: int = 2, width: int = 64):
        super().__init__()
        if scale < 1 or scale & (scale - 1):
            raise ValueError(f"scale must be a power of two, got {scale}")
        out_channels = out_channels or in_channels
        layers: list[nn.Module] = [_conv(in_channels, width, 9), nn.InstanceNorm2d(width, affine=True), nn.ReLU()]
        layers += [ResidualBlock(width) for _ in range(5)]
        for _ in range(int(math.log2(scale))):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(width, width, 3),
                       nn.InstanceNorm2d(width, affine=True), nn.ReLU()]
        layers += [_conv(width, out_channels, 9)]
        self.net = nn.Sequential(*layers)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
