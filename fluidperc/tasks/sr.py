"""Super-resolution (Johnson et al.'s transform network): a low-resolution frame to the high-resolution frame of
the same sim and time; metrics compare on the high-resolution grid."""

from __future__ import annotations

from fluidperc.datasets.frames import channel_mean, channel_std
from fluidperc.models import TransformNet
from fluidperc.tasks.base import FrameModel, FrameTask


class SuperResolution(FrameTask):
    def target_grid(self, cell):
        return tuple(cell.high_resolution)

    def batch(self, data, sims, frames, horizon):
        return {"input": data.low.centred[sims, frames], "target": data.high.centred[sims, frames]}

    def build_net(self, cell, data):
        channels = channel_mean(data.low.stats, data.variable).shape[1]
        return TransformNet(channels, channels, scale=cell.high_resolution[0] // cell.resolution[0], width=32)

    def build_model(self, cell, data, device, net=None):
        low, high, v = data.low.stats, data.high.stats, data.variable
        net = net if net is not None else self.build_net(cell, data)
        return FrameModel(net, channel_mean(high, v), channel_std(high, v), channel_mean(low, v),
                          channel_std(low, v)).to(device)
