"""The grid rules a dataset pair obeys, whether simulated or imported: each side at least 4 cells, and a low
resolution that divides evenly and keeps at least 4 cells per side."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

MIN_CELLS = 4


def _check_resolution(v: tuple[int, int]) -> tuple[int, int]:
    if min(v) < MIN_CELLS:
        raise ValueError(f"both sides of the resolution must be at least {MIN_CELLS} cells")
    return v


Resolution = Annotated[tuple[int, int], AfterValidator(_check_resolution)]


def check_downsampling(resolution: tuple[int, int], factor: int) -> None:
    """A pydantic model validator's body: raises ValueError when the low grid is not resolution // factor."""
    ny, nx = resolution
    if ny % factor or nx % factor:
        raise ValueError(f"resolution {ny}x{nx} is not divisible by the downsampling factor {factor}")
    if min(ny, nx) // factor < MIN_CELLS:
        raise ValueError(f"the low resolution {ny // factor}x{nx // factor} is below {MIN_CELLS} cells per side")
