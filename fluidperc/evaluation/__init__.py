"""Evaluation of trained cells on held-out test sims, gathered into RUN_DIR/results.zarr."""
