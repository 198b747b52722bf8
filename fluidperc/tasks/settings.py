"""What sweep files set for a task's cells: how they train (``train.settings``, per task ``train.task_settings``)
and how they are evaluated (``evaluate.settings``). Light: sweep validation and planning use them without torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainSettings(BaseModel):
    """Hyper-parameters; sweep files set them for all cells and may override them per task."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    steps: int = Field(1000, ge=1, description="optimiser steps per cell")
    batch_size: int = Field(8, ge=1, description="frames per rank and step (SOL: sims per rank and step)")
    lr: float = Field(1e-3, gt=0, description="Adam's learning rate")
    unroll: int = Field(4, ge=1, description="SOL: solver steps m unrolled per training sample")
    checkpoint_every: int = Field(100, ge=1, description="steps between checkpoints (a relaunch resumes from the last "
                                  "one)")
    validate_every: int = Field(100, ge=1, description="steps between validations on held-out sims")
    compression: float = Field(8.0, gt=1, description="AE: input values per latent value")
    variable: Literal["velocity", "marker"] = Field("velocity", description="AE/SR: which field the network sees")
    val_samples: int = Field(16, ge=1, description="validation frames (SOL: rollouts) on held-out sims")
    val_sims: int = Field(0, ge=0, description="validate on the last K training sims, held out from training "
                          "(0: validate on the test sims). Tuning needs K >= 1 so that it never sees the test sims")
    val_rollout: int | None = Field(None, ge=1, description="SOL: steps rolled out per validation sample "
                                    "(default: unroll). Fix it when unroll varies, so that runs compare")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when the job holds a GPU (each "
                                                   "rank its own), else the CPU")
    cuda_graph: bool = Field(False, description="on CUDA with one process per cell, replay each training step as "
                             "one CUDA graph (fluidperc/train/graphed.py); ignored elsewhere")
    pack_kernels: Literal["auto", "per_cell", "stacked"] = Field(
        "auto", description="how a job that trains several cells (train.cells_per_task) runs their networks: "
        "per_cell (one call per network: a cell's own kernels, so its weights match a cell trained alone), stacked "
        "(torch.func.vmap over stacked parameters, one kernel per layer for the pack: for GPUs), auto (stacked on "
        "CUDA, per_cell elsewhere)")


class EvalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    rollout_steps: int = Field(100, ge=1, description="SOL: steps rolled out from the first test frame")
    frames: int = Field(8, ge=1, description="SR/AE: test frames per sim, evenly spaced")
    samples: int = Field(4, ge=1, description="sample frames kept for the report's figure")
    animation_frames: int = Field(24, ge=0, description="frames of the first test sim kept for the report's "
                                  "animated GIF (SOL: evenly spaced over the rollout); 0: no GIF")
    ladder: list[tuple[int, int]] | None = Field(
        None, description="SOL and the combined pipeline: the grids [ny, nx] between the low and the high one at "
        "which the plain sim also runs, for error against wall time (default: 3 evenly spaced; []: none)")
    precision: Literal["float32", "bfloat16"] = Field(
        "float32", description="the networks (not the solver) under bfloat16 autocast: faster on GPUs and CPUs with "
        "AMX; the error it adds is stated in docs/evaluation.md")
    channels_last: bool = Field(False, description="the networks in channels-last layout (same values)")
