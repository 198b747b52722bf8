"""Simulated datasets: the store layout (store.py), their generation (generate.py), and checking them (verify.py,
``python -m fluidperc.datasets verify PATH``)."""
