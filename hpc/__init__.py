"""hpc: the cluster layer of fluidperc. Sweep specs, the launcher, job backends (Slurm, local, debug), Ray.

It decides where and when fluidperc's stage functions run; the science itself never imports it.
"""
