"""PhiFlow simulations of the study's scenes: Karman vortex street and buoyant plume.

Importing this package changes nothing in phiml: the reshape fix (fluidperc/sim/jit.py) is applied when a
Simulation is built."""
