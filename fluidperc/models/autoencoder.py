"""A convolutional bottleneck autoencoder with a configurable compression factor."""

from __future__ import annotations

import math

import torch
from torch import nn


class ConvAutoencoder(nn.Module):
    """``levels`` stride-2 stages down to a ``latent``-channel bottleneck, then nearest-upsample + conv stages.

    Compression = input values / latent values = in_channels * 4**levels / latent_channels.
    """

    def __init__(self, in_channels: int, compression: float = 8.0, levels: int = 2, width: int = 32):
        super().__init__()
        latent = max(1, round(in_channels * 4**levels / compression))
        self.compression = in_channels * 4**levels / latent
        enc: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
        for _ in range(levels):
            enc += [nn.Conv2d(width, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        enc += [nn.Conv2d(width, latent, 3, padding=1)]
        dec: list[nn.Module] = [nn.Conv2d(latent, width, 3, padding=1), nn.LeakyReLU(0.2)]
        for _ in range(levels):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2)]
        dec += [nn.Conv2d(width, in_channels, 3, padding=1)]
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        multiple = 2**self.levels
        h, w = x.shape[-2:]
        if h % multiple or w % multiple:
            raise ValueError(f"the autoencoder needs sides divisible by {multiple}, got {h}x{w}")
        return self.decoder(self.encoder(x))

    @staticmethod
    def latent_size(h: int, w: int, levels: int) -> int:
        return math.prod((h // 2**levels, w // 2**levels))
