"""``fluidperc.train.run(cell, out_dir)``: train one cell on whatever the process is given (1 CPU process, N gloo
processes, N GPUs with NCCL), checkpointing every K steps, resuming from the last checkpoint.

Determinism: the batch of step k depends only on (seed, k) through a seeded DistributedSampler, and a checkpoint
holds the weights, the optimiser and the step. So a run that is interrupted and resumed on the CPU ends with the
same weights and metrics as one that never stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from fluidperc.atomic import write_text
from fluidperc.datasets.frames import channel_stats
from fluidperc.errors import UserError
from fluidperc.provenance import code_commit
from fluidperc.losses import get_loss
from fluidperc.metrics import pixel_metrics
from fluidperc.tasks.base import TaskData, build_model, sample_loss
from fluidperc.tasks.cell import CellConfig
from fluidperc.train import checkpoint as ckpt
from fluidperc.train import distributed
from fluidperc.train.graphed import GraphedStep
from fluidperc.train.outputs import RESULT, append_piece, is_done  # noqa: F401  (is_done: re-exported)


def weights_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()



def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Trainer:
    def __init__(self, cell: CellConfig, out_dir: Path, progress: bool = True):
        self.cell = cell
        self.out = Path(out_dir)
        self.progress = progress
        self.step = 0
        self.resumed_from: int | None = None  # the checkpoint step this run started from
        self.in_step = False
        self.model: torch.nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.use_graph = False
        self.graph_step = None  # a fluidperc.train.graphed.GraphedStep when settings.cuda_graph applies
        self.dist: distributed.Dist | None = None
        # Called on rank 0 after each validation, once that step's checkpoint is on disk (Ray Tune reports here).
        self.on_validate: Callable[[dict[str, Any], Path], None] | None = None
        # Set by a scheduler's signal handler while the loop runs: called once at the end of the current step (its
        # metrics written), where a checkpoint holds exactly the steps done (hpc.jobs.TrainJob).
        self.in_loop = False
        self.at_step_end: Callable[[], None] | None = None

    # --- checkpoints ------------------------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        return {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def save_checkpoint(self) -> None:
        if self.dist.is_main:
            ckpt.save(self.out / "checkpoint.pt", self._payload())

    def save_if_consistent(self) -> bool:
        """For a scheduler's checkpoint signal: save unless a step is half-done (then the last periodic
        checkpoint stands; the run is deterministic per step, so redoing those steps changes nothing)."""
        if self.model is None or self.in_step:
            return False
        self.save_checkpoint()
        return True

    # --- metrics ------------------------------------------------------------------------------------------------
    def _reduce(self, value: torch.Tensor) -> float:
        if self.dist.grouped:
            value = value.detach().clone()
            dist.all_reduce(value)
            value /= self.dist.world_size
        return float(value.detach())

    def _term_rows(self, loss_fn, value: torch.Tensor) -> dict[str, float]:
        """A composite loss's terms, each its weighted share of ``train_loss`` (they add up to it; SOL's objective
        is m times the loss call, so the shares are scaled alike): which term drives training."""
        terms = getattr(loss_fn, "last_terms", None)
        if not terms:
            return {}
        total = sum(float(v) for v in terms.values())
        scale = float(value.detach()) / total if total else 1.0
        return {f"train_loss/{label}": self._reduce(v * scale) for label, v in terms.items()}

    def validate(self, data: TaskData, loss_fn) -> dict[str, float]:
        """The evaluation stage's pixel metrics (mean over validation frames and rollout steps) and the training
        loss on validation samples. Only the metrics compare across losses; Tune selects on them."""
        model = self.model
        batch = {k: v.to(self.dist.device) for k, v in data.batch(data.val_index, data.val_horizon).items()}
        with torch.no_grad():
            preds, target, value = data.task.validation_outputs(model, batch, loss_fn, data, self.cell)
        metrics = pixel_metrics(preds.float().cpu(), target.float().cpu(), *data.low.spacing(*preds.shape[-2:]))
        return {"val_loss": float(value), **{f"val_{k}": float(v.mean()) for k, v in metrics.items()}}

    # --- the loop -------------------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cell, s = self.cell, self.cell.settings
        self.dist = d = distributed.setup(self.cell.settings.device, rendezvous_dir=self.out)
        try:
            return self._fit(cell, s, d)
        finally:
            distributed.teardown(d)

    def _fit(self, cell, s, d) -> dict[str, Any]:
        """Build (resuming from a checkpoint), then step until ``steps``, validating, logging and checkpointing."""
        data, loss_fn = self._build(cell, d)
        wrapped = DistributedDataParallel(self.model) if d.grouped else self.model
        if self.use_graph:
            self.graph_step = GraphedStep(self._graph_body(wrapped, loss_fn))
        batches = self._batches(data, cell, d)
        log = _Log(self.out, self.step) if d.is_main else None
        bar = tqdm(total=s.steps, initial=self.step, desc=cell.label, unit="step", file=sys.stderr,
                   disable=not (self.progress and d.is_main), mininterval=10)
        last: dict[str, Any] = {}
        start, started, t0 = self.step, _utc_now(), time.monotonic()
        self.in_loop = True
        try:
            while self.step < s.steps:
                value = self._train_step(wrapped, next(batches), loss_fn)
                row: dict[str, Any] = {"step": self.step, "train_loss": self._reduce(value),
                                       **self._term_rows(loss_fn, value)}
                if self.step % s.validate_every == 0 or self.step == s.steps:
                    row.update(self.validate(data, loss_fn))
                last = row
                if log is not None:
                    log.write(row)
                if self.step % s.checkpoint_every == 0 or self.step == s.steps:
                    self.save_checkpoint()
                    distributed.barrier(d)
                if d.is_main and self.on_validate is not None and "val_loss" in row:
                    self.on_validate(row, self.out / "checkpoint.pt")
                bar.update(1)
                if self.at_step_end is not None:
                    hook, self.at_step_end = self.at_step_end, None
                    hook()
        finally:
            self.in_loop = False
            bar.close()
            if log is not None:
                log.close()
            if d.is_main and self.step > start:  # this job's share of the cell, whatever ended it
                append_piece(self.out, {"start": start, "to": self.step, "seconds": round(time.monotonic() - t0, 1),
                                        "host": socket.gethostname(), "code": code_commit(), "started": started,
                                        "ended": _utc_now(), "ranks": d.world_size, "device": str(d.device)})
        return self._finish(cell, d, last)

    def _build(self, cell, d) -> tuple[TaskData, Any]:
        """Data, model, loss and optimiser on the process's device; the checkpoint's state when there is one."""
        self.out.mkdir(parents=True, exist_ok=True)
        if d.is_main:
            write_text(self.out / "config.json", cell.model_dump_json(indent=1))
        torch.manual_seed(cell.seed)
        data = TaskData(cell)
        self.model = build_model(cell, data, d.device)
        target_stats = (data.high or data.low).stats
        loss_fn = get_loss(cell.loss_spec, channel_stats(target_stats, data.variable)).to(d.device)
        self.use_graph = self._graphed(cell, d)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cell.settings.lr, capturable=self.use_graph)
        state = ckpt.load(self.out / "checkpoint.pt")
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step = int(state["step"])
            self.resumed_from = self.step
            if d.is_main:
                print(f"cell {cell.label}: resuming from step {self.step} ({self.out / 'checkpoint.pt'})",
                      file=sys.stderr, flush=True)
        return data, loss_fn

    def _batches(self, data: TaskData, cell, d):
        """This rank's batch for each step from ``self.step`` on: a function of (seed, step) only, so a resumed
        run sees the batches an uninterrupted one would have."""
        s = cell.settings
        sampler = DistributedSampler(range(len(data.train_index)), num_replicas=d.world_size, rank=d.rank,
                                     shuffle=True, seed=cell.seed, drop_last=True)
        per_epoch = len(sampler) // s.batch_size
        if per_epoch == 0:
            raise UserError(f"cell {cell.label}: {len(sampler)} training samples per rank, fewer than batch_size {s.batch_size}")
        order: list[int] = []
        epoch_loaded = -1
        while True:
            epoch, j = divmod(self.step, per_epoch)
            if epoch != epoch_loaded:
                sampler.set_epoch(epoch)
                order, epoch_loaded = list(sampler), epoch
            index = [data.train_index[i] for i in order[j * s.batch_size:(j + 1) * s.batch_size]]
            yield {k: v.to(d.device) for k, v in data.batch(index).items()}

    def _graphed(self, cell, d) -> bool:
        """Whether this run replays its steps as a CUDA graph: asked for, on CUDA, one process (DDP's all-reduce
        would have to be captured too)."""
        if not cell.settings.cuda_graph:
            return False
        if d.device.type != "cuda" or d.grouped:
            if d.is_main:
                print(f"cell {cell.label}: cuda_graph needs a CUDA device and one process per cell; training "
                      f"eagerly on {d.device} with {d.world_size} process(es)", file=sys.stderr, flush=True)
            return False
        return True

    def _train_step(self, wrapped: torch.nn.Module, batch: dict[str, torch.Tensor], loss_fn) -> torch.Tensor:
        """One optimiser step; a non-finite loss stops the cell with a message instead of poisoning the weights
        (under a CUDA graph the replay has already stepped: the last checkpoint on disk predates it)."""
        cell = self.cell
        self.in_step = True
        if self.graph_step is not None:
            value = self.graph_step(batch)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            value = sample_loss(wrapped, batch, loss_fn, cell)
        if not torch.isfinite(value):
            raise FloatingPointError(
                f"cell {cell.label}: the {cell.loss_spec.label} loss is {float(value)} at step {self.step + 1}; "
                "lower the learning rate or check the data"
            )
        if self.graph_step is None:
            value.backward()
            self.optimizer.step()
        self.step += 1
        self.in_step = False
        return value

    def _graph_body(self, wrapped: torch.nn.Module, loss_fn) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        """The whole step as GraphedStep captures it (gradients zeroed in place: a graph keeps its addresses)."""
        def body(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=False)
            value = sample_loss(wrapped, batch, loss_fn, self.cell)
            value.backward()
            self.optimizer.step()
            return value
        return body

    def _finish(self, cell, d, last: dict[str, Any]) -> dict[str, Any]:
        """Check that every rank ended with the same weights, then write model.pt and result.json (last: its
        presence marks the cell done)."""
        digest = weights_digest(self.model)
        ranks = [(digest, socket.gethostname())]
        if d.grouped:  # data parallelism is only right if every rank ends with the same weights
            ranks = [None] * d.world_size
            dist.all_gather_object(ranks, (digest, socket.gethostname()))
        digests = [r[0] for r in ranks]
        if len(set(digests)) != 1:
            raise RuntimeError(f"cell {cell.label}: ranks ended with different weights {digests}")
        # where the ranks ran and how they met, so a multi-node run can be checked after the fact
        result = {"cell": cell.label, "steps": self.step, "weights_sha256": digest, "rank_digests": digests,
                  "world_size": d.world_size, "rank_hosts": [r[1] for r in ranks],
                  "rendezvous": d.rendezvous,  # rank 0's: the store it made (file, or tcp bound to its address)
                  "master_addr": os.environ.get("MASTER_ADDR") if d.grouped else None,
                  "resumed_from_step": self.resumed_from,
                  **{k: v for k, v in last.items() if k != "step"}}
        if d.is_main:
            ckpt.save(self.out / "model.pt", {"model": self.model.state_dict(), "step": self.step})
            write_text(self.out / RESULT, json.dumps(result, indent=1))
        return result


class _Log:
    """metrics.jsonl (lines after the resumed step dropped: they are written again) and TensorBoard, rank 0."""

    def __init__(self, out: Path, resume_step: int):
        from torch.utils.tensorboard import SummaryWriter

        path = out / "metrics.jsonl"
        if path.exists():
            kept = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= resume_step]
            write_text(path, "".join(ln + "\n" for ln in kept))
        self.metrics = open(path, "a")
        self.writer = SummaryWriter(str(out / "tb"))

    def write(self, row: dict[str, Any]) -> None:
        self.metrics.write(json.dumps(row) + "\n")
        self.metrics.flush()
        for key, v in row.items():
            if key != "step":
                self.writer.add_scalar(key, v, row["step"])

    def close(self) -> None:
        self.writer.close()
        self.metrics.close()


def run(cell: CellConfig | dict | str, out_dir: str | Path, progress: bool = True, trainer_hook=None) -> dict[str, Any]:
    """Train one cell into ``out_dir``; resumes from ``out_dir/checkpoint.pt`` when present."""
    if isinstance(cell, str):
        cell = CellConfig.model_validate_json(cell)
    elif isinstance(cell, dict):
        cell = CellConfig.model_validate(cell)
    trainer = Trainer(cell, Path(out_dir), progress)
    if trainer_hook is not None:
        trainer_hook(trainer)
    return trainer.fit()
