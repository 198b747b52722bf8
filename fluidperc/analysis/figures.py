"""How the report writes a figure: a PNG with an adaptive 256-colour palette, about half the size of matplotlib's
true-colour PNG for our colour-mapped fields and a third for line plots, so that a report stays small enough
to commit (docs/results holds at most 2 MB). The figure is closed after saving."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any


def save_png(fig: Any, path: Path, dpi: int) -> None:
    import matplotlib.pyplot as plt
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    buffer.seek(0)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                dither=Image.Dither.NONE)
    palette.save(path, format="PNG", optimize=True)
