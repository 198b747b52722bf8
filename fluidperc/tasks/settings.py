"""What sweep files set for a task's cells: how they train (``train.settings``, per task ``train.task_settings``)
and how they are evaluated (``evaluate.settings``). Light: sweep validation and planning use them without torch."""

from __future__ import annotations

import math
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
    val_sims: int = Field(0, ge=0, description="validate on the last K training sims, held out from training; 0: on "
                          "the dataset's validation sims (datagen's val_reynolds x val_seeds), or, for a dataset "
                          "that declares none, on its test sims. Tuning needs K >= 1 so that it never sees the "
                          "test sims")
    val_rollout: int | None = Field(16, ge=1, description="SOL: steps rolled out per validation sample (None: "
                                    "unroll). The default, 16, is long enough that validation speaks for a 100-step "
                                    "test rollout; fix it when unroll varies, so that runs compare")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when the job holds a GPU (each "
                                                   "rank its own), else the CPU")
    cuda_graph: bool = Field(False, description="on CUDA with one process per cell, replay each training step as "
                             "one CUDA graph (fluidperc/train/graphed.py); ignored elsewhere")
    schedule: Literal["constant", "cosine", "step"] = Field(
        "constant", description="the learning rate over training: constant; cosine (from lr down to lr x "
        "final_lr_fraction at the last step); step (times lr_decay_factor every lr_decay_every steps). Each step's "
        "rate is logged (metrics.jsonl's lr)")
    warmup_steps: int = Field(0, ge=0, description="steps over which the rate rises linearly from lr / warmup_steps "
                              "to lr before the schedule starts")
    final_lr_fraction: float = Field(0.0, ge=0, le=1, description="cosine: the rate at the last step, as a fraction "
                                     "of lr")
    lr_decay_every: int = Field(1000, ge=1, description="step: steps between decays")
    lr_decay_factor: float = Field(0.1, gt=0, le=1, description="step: what each decay multiplies the rate by")
    keep: Literal["last", "best"] = Field("last", description="which weights a cell keeps as model.pt: those of its "
                                          "last step, or those of its best validation by select_on (its step is in "
                                          "result.json and the report)")
    select_on: Literal["val_rel_l2", "val_mse", "val_mae", "val_vorticity_rmse", "val_spectrum_error", "val_loss"] = (
        Field("val_rel_l2", description="keep: best ranks validations by this metric (lower is better); val_loss is "
              "the cell's own loss, which does not compare across losses"))
    pack_kernels: Literal["auto", "per_cell", "stacked"] = Field(
        "auto", description="how a job that trains several cells (train.cells_per_task) runs their networks: "
        "per_cell (one call per network: a cell's own kernels, so its weights match a cell trained alone), stacked "
        "(torch.func.vmap over stacked parameters, one kernel per layer for the pack: for GPUs), auto (stacked on "
        "CUDA, per_cell elsewhere)")


    def lr_at(self, step: int, lr: float | None = None) -> float:
        """The rate of optimiser step ``step`` (1-based; a function of the step alone, so a resumed run uses the
        rates an uninterrupted one would). ``lr``: the cell's base rate (default: this setting's)."""
        base = self.lr if lr is None else lr
        if self.warmup_steps and step <= self.warmup_steps:
            return base * step / self.warmup_steps
        if self.schedule == "cosine":
            span = max(1, self.steps - self.warmup_steps)
            t = min(1.0, (step - self.warmup_steps) / span)
            low = base * self.final_lr_fraction
            return low + (base - low) * 0.5 * (1 + math.cos(math.pi * t))
        if self.schedule == "step":
            return base * self.lr_decay_factor ** ((step - self.warmup_steps - 1) // self.lr_decay_every)
        return base


class EvalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    rollout_steps: int = Field(100, ge=1, description="SOL: steps rolled out from each start frame of a test sim")
    rollout_starts: int = Field(1, ge=1, le=64, description="SOL: rollouts per test sim, from this many stored frames "
                                "evenly spaced from the first to the last that leaves rollout_steps to compare; each "
                                "(test sim, start) is one test trajectory in the results (coordinates "
                                "trajectory_sim, trajectory_start)")
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
