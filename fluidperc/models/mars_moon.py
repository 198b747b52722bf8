"""Solver-in-the-Loop's correction network ("mars_moon", Um et al., NeurIPS 2020).

Input: u and v at cell centres and a constant channel holding the sim's Re, each divided by its std over the
training sims. A 32-channel 5x5 conv, five residual blocks of two 32-channel 5x5 convs with LeakyReLU(0.3)
(Keras's default slope, not torch's 0.01), and an output conv to 2 channels: the velocity correction, which the
caller multiplies by the std and resamples onto the staggered grid.
"""

from __future__ import annotations

import torch
from torch import nn

SLOPE = 0.3


class _Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 5, padding=2)
        self.conv2 = nn.Conv2d(channels, channels, 5, padding=2)
        self.act = nn.LeakyReLU(SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.act(self.conv1(x))))


class MarsMoon(nn.Module):
    def __init__(self, in_channels: int = 3, width: int = 32, blocks: int = 5):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(in_channels, width, 5, padding=2), nn.LeakyReLU(SLOPE))
        self.blocks = nn.Sequential(*[_Block(width) for _ in range(blocks)])
        self.out = nn.Conv2d(width, 2, 5, padding=2)
        # Start as the identity correction: the corrected sim begins as the source sim, and training only has to
        # learn the correction, not first undo a random one (which costs most of a short run).
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.head(x)))
