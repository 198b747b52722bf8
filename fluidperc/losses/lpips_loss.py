"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, with its ImageNet trunk loaded from our resolver.

The package ships only its small linear layers and would fetch the trunk through torchvision's
``pretrained=True``. We build it with a random trunk (no download possible) and load the trunk ourselves from
the verified file, so a missing file gives our clear error instead of a network attempt on an offline node.
"""

from __future__ import annotations

import re

import torch

from fluidperc.errors import UserError
from fluidperc.losses.base import PerceptualLoss
from fluidperc.weights import WeightStore

from fluidperc.losses.spec import LPIPS_TRUNK as TRUNK_FILE  # noqa: E402
MIN_SIZE = {"alex": 31, "vgg": 16, "squeeze": 16}


def build_lpips(net: str, store: WeightStore):
    import lpips

    model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    path = store.resolve(TRUNK_FILE[net])
    state = torch.load(path, map_location="cpu", weights_only=True)
    trunk = {}
    for key in model.net.state_dict():
        # lpips slices keep torchvision's feature indices: 'slice2.4.weight' is 'features.4.weight'
        m = re.fullmatch(r"slice\d+\.(.+)", key)
        source = f"features.{m.group(1)}" if m else key
        if source not in state:
            raise UserError(f"{path}: not a torchvision {TRUNK_FILE[net]} checkpoint; it lacks '{source}'")
        trunk[key] = state[source]
    model.net.load_state_dict(trunk)
    return model.eval().requires_grad_(False)


class LPIPSLoss(PerceptualLoss):
    def __init__(self, spec, stats, store: WeightStore):
        self.min_size = MIN_SIZE[spec.net]
        super().__init__(spec, stats)
        self.model = build_lpips(spec.net, store)
        self.model.net = self.adopt_trunk(self.model.net)

    def features(self, x):
        """lpips's own forward, split per input: scaling layer, trunk, channel-normalised features."""
        import lpips

        return [lpips.normalize_tensor(f) for f in self.model.net.forward(self.model.scaling_layer(x * 2 - 1))]

    def compare(self, fa, fb):
        import lpips

        total = 0
        for lin, a, b in zip(self.model.lins, fa, fb):
            total = total + lpips.spatial_average(lin((a - b) ** 2), keepdim=True)
        return total.view(-1)
