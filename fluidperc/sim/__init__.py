"""PhiFlow simulations of the study's scenes: Karman vortex street and buoyant plume."""

from fluidperc.sim.jit import patch_phiml_reshape

patch_phiml_reshape()
