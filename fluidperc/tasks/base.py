"""What a task is, in torch: its samples (TaskData asks the task how to batch them), its model, its training
objective, its validation and its evaluation. :class:`Task` is the interface a new task implements;
:class:`FrameTask` does it for tasks that map one frame to one frame (AE, SR)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fluidperc.datasets.frames import Frames, load_frames
from fluidperc.devices import synchronize
from fluidperc.errors import UserError
from fluidperc.losses import FieldLoss
from fluidperc.tasks import get_task, task_entry
from fluidperc.tasks.cell import CellConfig
from fluidperc.tasks.settings import EvalSettings, TrainSettings


class InferenceOptions:
    """For evaluation only: the network (never the solver) in bfloat16 under autocast and/or channels-last
    layout. Training always runs float32. The error each introduces is measured in tests/test_device.py and
    stated in docs/evaluation.md."""

    bf16 = False

    def for_inference(self, precision: str = "float32", channels_last: bool = False) -> "InferenceOptions":
        self.bf16 = precision == "bfloat16"
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        return self

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        if not self.bf16:
            return self.net(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.net(x).float()


class FrameModel(InferenceOptions, nn.Module):
    """AE and SR: normalised input frames -> network -> de-normalised prediction."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor, in_mean: torch.Tensor, in_std: torch.Tensor):
        super().__init__()
        self.net = net
        for name, t in (("mean", mean), ("std", std), ("in_mean", in_mean), ("in_std", in_std)):
            self.register_buffer(name, t, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_net((x - self.in_mean) / self.in_std) * self.std + self.mean


@dataclass
class Evaluation:
    """What a task's evaluation hands the evaluation stage: ``results`` (metric -> (dims, array) over test_sim
    and step, baselines under the entry's suffixes), the ``steps`` axis, sample and animation frames of the
    first test sim (role -> [frame, channel, y, x], e.g. ``prediction``, ``reference``, ``source``) with the
    indices into ``steps`` they show, and wall seconds per frame by path."""

    results: dict[str, tuple[tuple[str, ...], np.ndarray]]
    steps: np.ndarray
    samples: dict[str, torch.Tensor]
    sample_index: np.ndarray
    anim: dict[str, torch.Tensor]
    anim_index: np.ndarray
    timing: dict[str, float] = field(default_factory=dict)
    coords: dict[str, Any] = field(default_factory=dict)  # extra coordinates of the results (e.g. a ladder's rungs)
    # every test trajectory whole, (prediction, reference) [test_sim, step, C, H, W], for the metrics of whole
    # trajectories (fluidperc.metrics.trajectory_metrics); None: a task that does not give them
    trajectories: tuple[torch.Tensor, torch.Tensor] | None = None
    baseline_trajectories: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # by suffix


class Task:
    """The interface of a task. Subclasses implement :meth:`batch`, :meth:`build_model`, :meth:`objective`,
    :meth:`validation_outputs` and :meth:`evaluate`; the defaults suit tasks without a solver."""

    def variable(self, settings: TrainSettings) -> str:
        """The field the network sees: 'velocity' or 'marker'."""
        return settings.variable

    def horizon(self, settings: TrainSettings) -> int:
        """Frames after a sample's start frame that a training batch needs."""
        return 0

    def val_horizon(self, settings: TrainSettings) -> int:
        """Frames after a validation sample's start frame."""
        return 0

    def target_grid(self, cell: CellConfig) -> tuple[int, int]:
        """The grid predictions are compared on (metrics take their spacing from it)."""
        return tuple(cell.resolution)

    def batch(self, data: TaskData, sims: torch.Tensor, frames: torch.Tensor, horizon: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def build_model(self, cell: CellConfig, data: TaskData, device: torch.device | str,
                    net: nn.Module | None = None) -> nn.Module:
        """The model on ``device``: the trainable network (``net``, else :meth:`build_net`) wrapped in what
        the cells of one dataset share (normalisation, the solver). The network is the model's ``net``."""
        raise NotImplementedError

    def build_net(self, cell: CellConfig, data: TaskData) -> nn.Module:
        """The trainable network alone, on the CPU, initialised from the caller's seed. A task that has it (and
        says ``packs=True`` in its entry) can train several cells in one job (fluidperc.train.pack): each gets
        its own network inside one shared model, whose other parts hold no trainable parameters."""
        raise NotImplementedError

    def objective(self, model: nn.Module, batch: dict[str, torch.Tensor], loss: FieldLoss, cell: CellConfig) -> torch.Tensor:
        raise NotImplementedError

    def validation_outputs(self, model: nn.Module, batch: dict[str, torch.Tensor], loss: FieldLoss, data: TaskData,
                           cell: CellConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(predicted frames, reference frames, the training loss on them), under no_grad."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, data: TaskData, cell: CellConfig, settings: EvalSettings,
                 device: torch.device | str, metrics) -> Evaluation:
        """Run the trained model on the held-out test sims; ``metrics(pred, ref)`` -> {metric: per-frame array}."""
        raise NotImplementedError


class FrameTask(Task):
    """A task that maps one frame to one frame: batches of (input, target) frames, the loss on the prediction,
    evaluation on evenly spaced frames of every test sim in one batch."""

    def objective(self, model, batch, loss, cell):
        return loss(model(batch["input"]), batch["target"])

    def validation_outputs(self, model, batch, loss, data, cell):
        preds = model(batch["input"])
        return preds, batch["target"], loss(preds, batch["target"])

    def evaluate(self, model, data, cell, settings, device, metrics):
        sims = torch.tensor(data.low.test_sims)
        n_frames = data.low.centred.shape[1]
        frames = np.linspace(0, n_frames - 1, min(settings.frames, n_frames)).round().astype(int)
        # every test sim's frames in one batch (sim-major), built as training builds its batches: one network
        # call instead of one per sim
        batch = self.batch(data, sims.repeat_interleave(len(frames)), torch.from_numpy(frames).repeat(len(sims)), 0)
        inp = batch["input"].to(device)
        t0 = time.perf_counter()
        out = model(inp)
        synchronize(device)
        timing = {"network": (time.perf_counter() - t0) / (len(frames) * len(sims))}
        pred = out.cpu().unflatten(0, (len(sims), len(frames)))
        ref = batch["target"].unflatten(0, (len(sims), len(frames)))
        per_sim = [metrics(pred[i], ref[i]) for i in range(len(sims))]
        results = {name: (("test_sim", "step"), np.stack([m[name] for m in per_sim])) for name in per_sim[0]}
        keep = np.arange(min(settings.samples, len(frames)))
        shown = np.arange(min(settings.animation_frames, len(frames)))
        return Evaluation(results, frames, {"prediction": pred[0, keep], "reference": ref[0, keep]}, keep,
                          {"prediction": pred[0, shown], "reference": ref[0, shown]}, shown, timing,
                          trajectories=(pred, ref))


class TaskData:
    """Samples of a cell's task: the stores' frames, the index space for the sampler, and batches from indices
    (their content is the task's: :meth:`Task.batch`)."""

    def __init__(self, cell: CellConfig):
        s = cell.settings
        self.task = task = get_task(cell.task)
        root = Path(cell.data_dir)
        variable = task.variable(s)
        low_path = root / cell.low_store
        self.low: Frames = load_frames(low_path, variable)
        self.high: Frames | None = (load_frames(root / cell.high_store, variable)
                                    if task_entry(cell.task).high_resolution else None)
        self.variable = variable
        self.cell = cell
        n_frames = self.low.centred.shape[1]
        horizon = task.horizon(s)
        if n_frames <= horizon:
            raise UserError(f"cell {cell.label}: {low_path} has {n_frames} frames, fewer than unroll+1 = {horizon + 1}")
        self.last_start = n_frames - 1 - horizon
        # validation: the store's declared validation sims; else (older stores) the test sims, or with val_sims: K
        # the last K training sims held out
        train_sims, val_sims = self.low.train_sims, self.low.val_sims or self.low.test_sims or self.low.train_sims
        if s.val_sims:
            if s.val_sims >= len(train_sims):
                raise UserError(f"cell {cell.label}: val_sims {s.val_sims} leaves no training sims in {low_path} "
                                f"({len(train_sims)} training sims); expected val_sims < {len(train_sims)}")
            train_sims, val_sims = train_sims[: -s.val_sims], train_sims[-s.val_sims:]
        self.train_index = [(sim, f) for sim in train_sims for f in range(self.last_start + 1)]
        self.val_horizon = task.val_horizon(s)
        val_last = n_frames - 1 - self.val_horizon
        if val_last < 0:
            raise UserError(f"cell {cell.label}: {low_path} has {n_frames} frames, fewer than val_rollout+1 = "
                            f"{self.val_horizon + 1}")
        step = max(1, (val_last + 1) * len(val_sims) // s.val_samples)
        self.val_index = [(sim, f) for sim in val_sims for f in range(val_last + 1)][::step][: s.val_samples]
        if not self.train_index:
            raise UserError(f"cell {cell.label}: {low_path} has no complete training sims")

    def batch(self, index: list[tuple[int, int]], horizon: int | None = None) -> dict[str, torch.Tensor]:
        """``horizon``: frames after each start frame (default: the training horizon, e.g. SOL's unroll m)."""
        sims = torch.tensor([i for i, _ in index])
        frames = torch.tensor([f for _, f in index])
        return self.task.batch(self, sims, frames, horizon or self.task.horizon(self.cell.settings))


def build_model(cell: CellConfig, data: TaskData, device: torch.device | str = "cpu",
                net: nn.Module | None = None) -> nn.Module:
    """Seeded by the caller; every rank builds the same initial weights, on ``device`` (SOL's solver included).
    ``net``: the network to wrap (a packed job's), for a task whose entry says it packs."""
    if net is None:
        return data.task.build_model(cell, data, device)
    return data.task.build_model(cell, data, device, net=net)


def sample_loss(model: nn.Module, batch: dict[str, torch.Tensor], loss: FieldLoss, cell: CellConfig) -> torch.Tensor:
    """The training objective of one batch (the task's)."""
    return get_task(cell.task).objective(model, batch, loss, cell)
