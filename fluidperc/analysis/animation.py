"""One small animated GIF per task and scene: reference, source and each loss's rollout side by side, on the
shared colour scale of the sample frames. Researchers judge a flow prediction by eye first."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr

from fluidperc.analysis.fields import sample_field

MAX_BYTES = 1_000_000
PANEL_HEIGHT = 128  # px; small grids are scaled up (nearest), so each cell stays a sharp square
PANEL_WIDTH = 96  # at least, so that a loss's label fits above its panel
LABEL_HEIGHT = 26  # two lines: the step, then each panel's name
CHAR_WIDTH = 6  # PIL's default bitmap font


def rollout_rows(ds: xr.Dataset, task: str, resolution: str) -> tuple[dict[str, np.ndarray], np.ndarray, bool] | None:
    """(name -> frames [t, y, x] as shown, the step of each frame, whether the field is a scalar) for seed 0 and
    the first test sim of every evaluated cell of this task and grid; None when nothing was kept."""
    seed = int(ds.seed.values[0])
    rows: dict[str, np.ndarray] = {}
    steps, scalar = None, False
    for label, eval_path in ds.attrs.get("cells", {}).items():
        if not (label.startswith(f"{task}-{resolution}-") and label.endswith(f"-s{seed}") and Path(eval_path).exists()):
            continue
        ev = xr.open_zarr(eval_path)
        if "anim_prediction" not in ev or ev.sizes.get("channel") not in (1, 2):
            continue
        field = sample_field(ev)
        scalar = ev.sizes["channel"] == 1
        steps = ev.anim_step.values
        rows.setdefault("reference", field(ev.anim_reference.values))
        for name, var in (("high-res sim", "anim_highres"), ("source", "anim_source")):
            if var in ev:
                rows.setdefault(name, field(ev[var].values))
        rows[ev.attrs["loss"]] = field(ev.anim_prediction.values)
    if len(rows) < 2 or steps is None:
        return None
    return rows, steps, scalar


def _panel(frame: np.ndarray, cmap, lo: float, hi: float, scale: int) -> np.ndarray:
    unit = np.clip((frame - lo) / (hi - lo), 0, 1)
    rgb = (cmap(unit[::-1])[..., :3] * 255).astype(np.uint8)  # origin lower: the first row is the bottom
    return rgb.repeat(scale, axis=0).repeat(scale, axis=1)


def write_gif(ds: xr.Dataset, task: str, resolution: str, path: Path, frame_ms: int = 150) -> bool:
    """False when the evaluation kept no animation frames (``evaluate.settings.animation_frames: 0``)."""
    from PIL import Image, ImageDraw

    found = rollout_rows(ds, task, resolution)
    if found is None:
        return False
    rows, steps, scalar = found
    limit = float(np.percentile(np.abs(rows["reference"]), 99)) or 1.0  # the sample figure's scale
    lo, hi = (0.0, limit) if scalar else (-limit, limit)
    cmap = matplotlib.colormaps["viridis" if scalar else "RdBu_r"]
    ny, nx = rows["reference"].shape[1:]
    scale = max(1, PANEL_HEIGHT // ny, -(-PANEL_WIDTH // nx))
    width, height = nx * scale, ny * scale + LABEL_HEIGHT
    pick = np.arange(len(steps))
    while True:
        images = []
        for t in pick:
            canvas = Image.new("RGB", (width * len(rows), height), "white")
            draw = ImageDraw.Draw(canvas)
            draw.text((2, 1), f"step {int(steps[t])}", fill="black")
            for i, (name, frames) in enumerate(rows.items()):
                canvas.paste(Image.fromarray(_panel(frames[t], cmap, lo, hi, scale)), (i * width, LABEL_HEIGHT))
                draw.text((i * width + 2, 13), name[: max(1, width // CHAR_WIDTH - 1)], fill="black")
            images.append(canvas.convert("P", palette=Image.Palette.ADAPTIVE, colors=128))
        images[0].save(path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0, optimize=True)
        if path.stat().st_size <= MAX_BYTES or len(pick) <= 2:
            return True
        pick = pick[::2]  # too big: every other frame
