"""How a stored frame is shown in figures and animations: a velocity as its vorticity, a scalar as it is."""

from __future__ import annotations

import numpy as np
import xarray as xr

from fluidperc.datasets.names import scene_of
from fluidperc.metrics import vorticity
from fluidperc.sim.scenes import scene_info


def sample_field(ev: xr.Dataset):
    """What a sample frame [n, C, y, x] of an evaluation store is shown as: the vorticity of a velocity, with the
    grid spacing of the dataset's own domain (Karman 100 x 200, the plume 200 x 200, an import's), or a scalar field as it is."""
    if ev.sizes.get("channel") != 2:
        return lambda a: np.asarray(a)[:, 0]
    import torch

    if "domain" in ev.attrs:  # the dataset's own domain (evaluations since imported datasets)
        width, height = ev.attrs["domain"]
    else:
        info = scene_info(ev.attrs.get("scene") or scene_of(ev.attrs["resolution"]))
        width, height = info.width, info.height
    dx, dy = width / ev.sizes["x"], height / ev.sizes["y"]
    return lambda a: vorticity(torch.from_numpy(np.asarray(a)), dx, dy).numpy()
