"""One Tune trial: a training cell built from the base cell and the sampled config, trained by fluidperc.train.

The trial reports once per epoch (the evaluation stage's metrics on held-out training sims) together with a Tune
checkpoint holding the trainer's own checkpoint, so a paused, restarted or restored trial continues from there.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from fluidperc.tasks.cell import CellConfig

CARRIED = ("checkpoint.pt", "checkpoint.pt.sha256", "metrics.jsonl")


def trial_cell(base: CellConfig, config: dict[str, Any]) -> CellConfig:
    settings = {**base.settings.model_dump(), **{k: v for k, v in config.items() if k != "loss"}}
    return CellConfig.model_validate({**base.model_dump(), "loss": config.get("loss", base.loss), "settings": settings})


def trial_dirname(trial: Any) -> str:
    return f"trial-{trial.trial_id}"


def train_trial(config: dict[str, Any], base_cell: str, threads: int) -> None:
    import torch
    from ray import tune

    from fluidperc.train import run  # torch: in the trial's worker

    torch.set_num_threads(max(1, threads))
    cell = trial_cell(CellConfig.model_validate_json(base_cell), config)
    epoch_steps = cell.settings.validate_every
    out = Path(tune.get_context().get_trial_dir()) / "train"
    out.mkdir(parents=True, exist_ok=True)
    for name in CARRIED:  # Tune's checkpoint, not whatever an earlier attempt left here, is where we resume
        (out / name).unlink(missing_ok=True)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            for name in CARRIED:
                if (Path(d) / name).exists():
                    shutil.copy2(Path(d) / name, out / name)

    def report(row: dict[str, Any], checkpoint_file: Path) -> None:
        metrics = {**row, "epoch": row["step"] // epoch_steps, "loss_label": cell.loss_spec.label,
                   "node": socket.gethostname()}  # where Ray placed the trial (tune.zarr's ``node``)
        with tempfile.TemporaryDirectory() as d:
            for name in CARRIED:
                src = checkpoint_file.parent / name
                if src.exists():
                    shutil.copy2(src, Path(d) / name)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    run(cell, out, progress=False, trainer_hook=lambda trainer: setattr(trainer, "on_validate", report))
