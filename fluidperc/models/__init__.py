"""Networks, one file per architecture family: the autoencoder, Johnson et al.'s transformation network for
super-resolution, and Solver-in-the-Loop's correction network."""

from fluidperc.models.autoencoder import ConvAutoencoder
from fluidperc.models.johnson import TransformNet
from fluidperc.models.mars_moon import MarsMoon

__all__ = ["ConvAutoencoder", "MarsMoon", "TransformNet"]
