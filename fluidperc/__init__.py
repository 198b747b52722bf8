"""fluidperc: perceptual losses vs MSE for networks that learn from fluid simulations.

The science lives here as plain functions that run in-process; the ``hpc`` package decides where and
when they run. This package never imports ``hpc``.
"""

__version__ = "0.1.0"
