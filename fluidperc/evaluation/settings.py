"""What an evaluation job is asked for (sweep files set it under evaluate.settings); light, for validation."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
        "AMX; the error it adds is stated in README.md")
    channels_last: bool = Field(False, description="the networks in channels-last layout (same values)")
