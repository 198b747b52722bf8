"""The autoencoder task: a frame through a convolutional bottleneck (``compression`` input values per latent
value) and back; the loss compares the reconstruction with the frame."""

from __future__ import annotations

from fluidperc.datasets.frames import channel_mean, channel_std
from fluidperc.models import ConvAutoencoder
from fluidperc.tasks.base import FrameModel, FrameTask


class Autoencoder(FrameTask):
    def batch(self, data, sims, frames, horizon):
        x = data.low.centred[sims, frames]
        return {"input": x, "target": x}

    def build_net(self, cell, data):
        return ConvAutoencoder(channel_mean(data.low.stats, data.variable).shape[1], cell.settings.compression)

    def build_model(self, cell, data, device, net=None):
        mean, std = channel_mean(data.low.stats, data.variable), channel_std(data.low.stats, data.variable)
        return FrameModel(net if net is not None else self.build_net(cell, data), mean, std, mean, std).to(device)
