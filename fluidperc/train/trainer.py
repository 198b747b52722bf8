"""``fluidperc.train.run(cell, out_dir)``: train one cell; ``run_pack(cells, out_dirs)``: train several cells that
differ only in seed, loss and learning rate as one computation (fluidperc.train.pack). Either runs on whatever
the process is given (1 CPU process, N gloo processes, N GPUs with NCCL), checkpointing every K steps and
resuming each cell from its own last checkpoint.

Determinism: the batch of step k of a cell depends only on (its seed, k) through a seeded DistributedSampler, and
a checkpoint holds the weights, the optimiser and the step. So a run that is interrupted and resumed on the CPU
ends with the same weights and metrics as one that never stopped, whichever cells shared its jobs.

Every cell writes its own directory, the same whether it trained alone or in a pack: config.json,
metrics.jsonl, tb/, checkpoint.pt, model.pt, result.json, pieces.jsonl.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from fluidperc.atomic import write_text
from fluidperc.datasets.frames import channel_stats
from fluidperc.errors import UserError
from fluidperc.losses import get_loss
from fluidperc.metrics import pixel_metrics
from fluidperc.provenance import code_commit
from fluidperc.tasks import task_entry
from fluidperc.tasks.base import TaskData, build_model
from fluidperc.tasks.cell import CellConfig, check_pack
from fluidperc.train import checkpoint as ckpt
from fluidperc.train import distributed
from fluidperc.train.graphed import GraphedStep
from fluidperc.train.outputs import (  # noqa: F401  (is_done: re-exported)
    OPEN_PIECE,
    RESULT,
    append_piece,
    is_done,
    settle_open_piece,
    write_open_piece,
)
from fluidperc.train.pack import PackedNet, PackLoss, resolve_kernels

LOCK = ".train.lock"


def weights_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class CellRun:
    """One cell of a job: its directory, network, loss, optimiser, step, batches and log."""

    def __init__(self, cell: CellConfig, out: Path):
        self.cell = cell
        self.out = Path(out)
        self.net: torch.nn.Module | None = None  # the trainable network (the whole model for a task that cannot pack)
        self.loss_fn: Any = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.step = 0
        self.resumed_from: int | None = None  # the checkpoint step this job started from
        self.start = 0
        self.started = ""
        self.t0 = 0.0
        self.cost_s = 0.0  # this cell's share of the job's wall time: each step's time over the cells it trained
        self.batches: Any = None
        self.log: _Log | None = None
        self.last: dict[str, Any] = {}
        self.failure: str | None = None
        self.lock_fd: int | None = None
        # keep: best: the best validation so far by settings.select_on ({"step", "value", "model"}), in checkpoints
        self.best: dict[str, Any] | None = None
        self.lr = 0.0  # the rate of its last step
        self.finished = False  # done before this job started: left untouched


class Trainer:
    def __init__(self, cells: Sequence[CellConfig], out_dirs: Sequence[Path], progress: bool = True):
        if not cells or len(cells) != len(out_dirs):
            raise UserError(f"a training job needs one output directory per cell; got {len(cells)} cell(s) and "
                            f"{len(out_dirs)} director(ies)")
        check_pack(list(cells))
        self.runs = [CellRun(c, Path(o)) for c, o in zip(cells, out_dirs)]
        self.cell = cells[0]  # what the cells share: task, data, architecture, schedule (check_pack)
        self.progress = progress
        self.in_step = False
        self.model: torch.nn.Module | None = None  # the shared model, its ``net`` the active cells' networks
        self.use_graph = False
        self.graph_step: GraphedStep | None = None
        self.dist: distributed.Dist | None = None
        self.code = ""  # the commit this job runs (provenance.code_commit), read once on rank 0 when it starts
        self.kernels = "per_cell"
        self.active: list[CellRun] = []
        self._packs: dict[tuple[int, ...], PackedNet] = {}  # PackedNets by the cells in them, built once
        # Called on rank 0 after each validation of a job's only cell, once that step's checkpoint is on disk (Ray
        # Tune reports here).
        self.on_validate: Callable[[dict[str, Any], Path], None] | None = None
        # Set by a scheduler's signal handler while the loop runs: called once at the end of the current step (its
        # metrics written), where a checkpoint holds exactly the steps done (hpc.jobs.TrainJob).
        self.in_loop = False
        self.at_step_end: Callable[[], None] | None = None

    @property
    def step(self) -> int:
        """The step of the job's least advanced cell (what a scheduler's message reports)."""
        live = self.active or self.runs
        return min(r.step for r in live)

    # --- checkpoints ------------------------------------------------------------------------------------------
    def _state(self, run: CellRun) -> dict[str, torch.Tensor]:
        """The cell's weights as a model of its own would hold them (``net.`` + the network's), whichever pack
        it trained in: checkpoints and model.pt read the same for a cell trained alone."""
        if len(self.runs) == 1:
            return self.model.state_dict()
        shared = {k: v for k, v in self.model.state_dict().items() if not k.startswith("net.")}
        return {**shared, **{f"net.{k}": v for k, v in run.net.state_dict().items()}}

    def _load_state(self, run: CellRun, state: dict[str, torch.Tensor]) -> None:
        if len(self.runs) == 1:
            self.model.load_state_dict(state)
        else:
            run.net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})

    def save_checkpoint(self, run: CellRun) -> None:
        if self.dist.is_main:
            payload = {"step": run.step, "model": self._state(run), "optimizer": run.optimizer.state_dict()}
            if run.best is not None:
                payload["best"] = run.best
            ckpt.save(run.out / "checkpoint.pt", payload)
            write_open_piece(run.out, self._piece(run, self.dist))  # what a job killed from here on has done

    def _track_best(self, run: CellRun, row: dict[str, Any]) -> None:
        """keep: best: remember the weights of the cell's best validation so far (lower select_on is better)."""
        s = run.cell.settings
        value = row.get(s.select_on)
        if s.keep != "best" or value is None or not math.isfinite(value):
            return
        if run.best is None or value < run.best["value"]:
            run.best = {"step": run.step, "value": float(value),
                        "model": {k: v.detach().cpu().clone() for k, v in self._state(run).items()}}

    def _set_lr(self, run: CellRun) -> float:
        """The rate of the cell's next step (train.settings.schedule), set in place: a CUDA graph captured the
        optimiser's rate tensor, not a number."""
        lr = run.cell.settings.lr_at(run.step + 1, run.cell.settings.lr)
        for group in run.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        return lr

    def save_if_consistent(self) -> bool:
        """For a scheduler's checkpoint signal: save every cell still training unless a step is half-done (then
        the last periodic checkpoints stand; the run is deterministic per step, so redoing those steps changes
        nothing)."""
        if self.model is None or self.in_step:
            return False
        for run in self.active:
            self.save_checkpoint(run)
        return True

    # --- metrics ------------------------------------------------------------------------------------------------
    def _reduce(self, values: list[torch.Tensor]) -> list[float]:
        """Scalars averaged over the ranks, in one collective and one read back to the host."""
        if not values:
            return []
        flat = torch.stack([v.detach().reshape(()) for v in values])
        if self.dist.grouped:
            flat = flat.clone()
            dist.all_reduce(flat)
            flat /= self.dist.world_size
        return flat.cpu().tolist()

    def _rows(self, runs: list[CellRun], values: torch.Tensor, pack_loss: PackLoss) -> list[dict[str, Any]]:
        """Each cell's training row: its loss and, for a sum, each term's weighted share of it (they add up to
        it; SOL's objective is m times the loss call, so the shares are scaled alike): which term drives it."""
        flat, where = [values[i] for i in range(len(runs))], []
        for i in range(len(runs)):
            terms = pack_loss.terms[i]
            total = sum(float(v) for v in terms.values()) if terms else 0.0
            scale = float(values[i].detach()) / total if total else 1.0
            for label, v in terms.items():
                where.append((i, f"train_loss/{label}"))
                flat.append(v * scale)
        reduced = self._reduce(flat)
        rows = [{"step": r.step, "train_loss": reduced[i], "lr": r.lr} for i, r in enumerate(runs)]
        for (i, key), v in zip(where, reduced[len(runs):]):
            rows[i][key] = v
        return rows

    def validate(self, runs: list[CellRun], data: TaskData) -> list[dict[str, float]]:
        """The evaluation stage's pixel metrics (mean over validation frames and rollout steps) and the training
        loss on validation samples, per cell; the cells' networks run as one pack on the same samples. Only the
        metrics compare across losses; Tune selects on them."""
        k = len(runs)
        batch = {key: v.to(self.dist.device) for key, v in data.batch(data.val_index, data.val_horizon).items()}
        if k > 1:
            batch = {key: torch.cat([v] * k) for key, v in batch.items()}
        model = self._forward_model(runs)
        with torch.no_grad():
            preds, target, values = data.task.validation_outputs(model, batch, self._pack_loss(runs), data, self.cell)
        spacing = data.low.spacing(*preds.shape[-2:])
        rows = []
        for run, p, t, value in zip(runs, preds.float().cpu().chunk(k), target.float().cpu().chunk(k), values):
            metrics = pixel_metrics(p, t, *spacing)
            rows.append({"val_loss": float(value), **{f"val_{name}": float(v.mean()) for name, v in metrics.items()}})
        if k > 1:
            self._forward_model(self.active)
        return rows

    # --- the model of the cells that train --------------------------------------------------------------------
    def _forward_model(self, runs: list[CellRun]) -> torch.nn.Module:
        """The shared model with ``runs``' networks in it: the network itself for one cell, else a pack."""
        if len(self.runs) == 1:
            return self.model
        if len(runs) == 1:
            self.model.net = runs[0].net
            return self.model
        key = tuple(id(r) for r in runs)
        if key not in self._packs:
            self._packs[key] = PackedNet([r.net for r in runs], stacked=self.kernels == "stacked")
        self.model.net = self._packs[key]
        return self.model

    def _pack_loss(self, runs: list[CellRun]) -> PackLoss:
        return PackLoss([r.loss_fn for r in runs], grouped=self.kernels == "stacked")

    # --- the loop -------------------------------------------------------------------------------------------------
    def fit(self) -> list[dict[str, Any] | None]:
        self.dist = d = distributed.setup(self.cell.settings.device, rendezvous_dir=self.runs[0].out)
        try:
            return self._fit(d)
        finally:
            distributed.teardown(d)
            for run in self.runs:
                if run.lock_fd is not None:
                    os.close(run.lock_fd)  # releases the cell's lock

    def _fit(self, d) -> list[dict[str, Any] | None]:
        """Build (resuming each cell from its checkpoint), then step until ``steps``, validating, logging and
        checkpointing each cell; a cell whose loss is not finite stops and the others go on."""
        s = self.cell.settings
        results: dict[int, dict[str, Any]] = {}
        for i, run in enumerate(self.runs):  # finished already (a relaunch packed it with unfinished ones)
            if is_done(run.out, s.steps):
                results[i] = json.loads((run.out / RESULT).read_text())
                run.finished = True
        data = self._build(d)
        if data is None:  # finished, or another job trains them
            return [results.get(i) for i in range(len(self.runs))]
        self.active = [r for r in self.runs if r.net is not None and r.step < s.steps]
        if d.is_main:
            self.code = code_commit()  # once per job: each checkpoint's record names it, and it cannot change
            for run in self.runs:
                if run.net is not None:  # this job's cells: a record a job killed since its last checkpoint left
                    settle_open_piece(run.out)
        for i, run in enumerate(self.runs):
            if run.net is not None and run.step >= s.steps:  # finished but for its result (killed right there)
                results[i] = self._finish(run, d)
        for run in self.active:
            run.batches = self._batches(data, run, d)
            run.log = _Log(run.out, run.step) if d.is_main else None
            run.start, run.started, run.t0 = run.step, _utc_now(), time.monotonic()
        label = self.cell.label if len(self.runs) == 1 else f"{len(self.active)} cells"
        bar = tqdm(total=sum(s.steps - r.step for r in self.active), desc=label, unit="step", file=sys.stderr,
                   disable=not (self.progress and d.is_main) or not self.active, mininterval=10)
        wrapped, body = self._prepare_step(d)
        self.in_loop = True
        try:
            while self.active:
                runs = list(self.active)
                t_step = time.monotonic()
                values, pack_loss = self._train_step(wrapped, body, runs)
                rows = self._rows(runs, values, pack_loss)
                due_val = [i for i, r in enumerate(runs) if r.step % s.validate_every == 0 or r.step == s.steps]
                failed = [r for r in runs if r.failure is not None]
                due_val = [i for i in due_val if runs[i].failure is None]
                if due_val:
                    for i, row in zip(due_val, self.validate([runs[i] for i in due_val], data)):
                        rows[i].update(row)
                        self._track_best(runs[i], rows[i])
                dt = time.monotonic() - t_step
                for run, row in zip(runs, rows):
                    run.cost_s += dt / len(runs)
                    if run.failure is not None:
                        continue
                    run.last = row
                    if run.log is not None:
                        run.log.write(row)
                saved = [r for r in runs if r.failure is None and (r.step % s.checkpoint_every == 0 or r.step == s.steps)]
                for run in saved:
                    self.save_checkpoint(run)
                if saved:
                    distributed.barrier(d)
                if d.is_main and self.on_validate is not None and len(self.runs) == 1 and "val_loss" in rows[0]:
                    self.on_validate(rows[0], self.runs[0].out / "checkpoint.pt")
                bar.update(len(runs))
                done = [r for r in runs if r.failure is None and r.step >= s.steps]
                for run in done:
                    self._close(run, d)
                    results[self.runs.index(run)] = self._finish(run, d)
                for run in failed:
                    self._close(run, d)
                if done or failed:
                    self.active = [r for r in self.active if r not in done and r not in failed]
                    if self.active:
                        wrapped, body = self._prepare_step(d)
                if self.at_step_end is not None:
                    hook, self.at_step_end = self.at_step_end, None
                    hook()
        finally:
            self.in_loop = False
            bar.close()
            for run in self.active:
                self._close(run, d)
        failures = [r.failure for r in self.runs if r.failure is not None]
        if failures:
            raise FloatingPointError("; ".join(failures))
        return [results.get(i) for i in range(len(self.runs))]

    def _close(self, run: CellRun, d) -> None:
        """Close the cell's log and record this job's share of it (whatever ended it)."""
        if run.log is not None:
            run.log.close()
            run.log = None
        if d.is_main and run.step > run.start:
            append_piece(run.out, self._piece(run, d))
        if d.is_main:
            (run.out / OPEN_PIECE).unlink(missing_ok=True)
        run.start = run.step

    def _piece(self, run: CellRun, d) -> dict[str, Any]:
        """This job's compute record for the cell, from the step it started at to now."""
        seconds = time.monotonic() - run.t0
        return {"start": run.start, "to": run.step, "seconds": round(seconds, 3), "host": socket.gethostname(),
                "code": self.code, "started": run.started, "ended": _utc_now(), "ranks": d.world_size,
                "device": str(d.device), "cells": len(self.runs), "cost_seconds": round(min(run.cost_s, seconds), 3)}

    def _lock(self, run: CellRun) -> bool:
        """Hold the cell's lock for the job's life: two jobs never train one cell at once (a relaunch may pack
        cells differently from a job still running). A POSIX lock, as NFS honours them."""
        run.out.mkdir(parents=True, exist_ok=True)
        fd = os.open(run.out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        run.lock_fd = fd
        return True

    def _claim(self, d) -> list[bool]:
        """Which cells this job trains: those whose lock rank 0 holds (every rank learns the same)."""
        held = [not r.finished and self._lock(r) for r in self.runs] if d.is_main else [False] * len(self.runs)
        if d.grouped:
            box = [held]
            dist.broadcast_object_list(box, src=0)
            held = box[0]
        for run, ok in zip(self.runs, held):
            if not ok and not run.finished and d.is_main:
                print(f"cell {run.cell.label}: another job is training it ({run.out / LOCK} is locked); this job "
                      "leaves it to that one", file=sys.stderr, flush=True)
        return held

    def _build(self, d) -> TaskData | None:
        """Data, the shared model, each claimed cell's network, loss and optimiser on the process's device; each
        cell's checkpoint state when it has one."""
        held = self._claim(d)
        if not any(held):
            return None
        data = TaskData(self.cell)
        target_stats = channel_stats((data.high or data.low).stats, data.variable)
        losses: dict[str, Any] = {}  # cells that share a loss share its module (and its frozen weights)
        packed = len(self.runs) > 1
        for i, run in enumerate(self.runs):
            cell = run.cell
            if d.is_main and held[i]:
                write_text(run.out / "config.json", cell.model_dump_json(indent=1))
            torch.manual_seed(cell.seed)
            if not packed:
                self.model = build_model(cell, data, d.device)
                net = self.model
            else:
                net = data.task.build_net(cell, data).to(d.device)
                if self.model is None:
                    self.model = build_model(cell, data, d.device, net=net)
            if not held[i]:
                continue
            run.net = net
            label = cell.loss_spec.label
            if label not in losses:
                losses[label] = get_loss(cell.loss_spec, target_stats).to(d.device)
            run.loss_fn = losses[label]
        if packed:
            shared = [n for n, _ in self.model.named_parameters() if not n.startswith("net.")]
            if shared:
                raise UserError(f"task '{self.cell.task}': its model has trainable parameters outside its network "
                                f"({', '.join(shared[:4])}), so its cells cannot share a job; set "
                                "train.cells_per_task: 1")
        self.kernels = resolve_kernels(self.cell.settings.pack_kernels, d.device) if packed else "per_cell"
        self.use_graph = self._graphed(d)
        for run in self.runs:
            if run.net is None:
                continue
            lr = run.cell.settings.lr
            run.optimizer = torch.optim.Adam(run.net.parameters(), capturable=self.use_graph,
                                             lr=torch.tensor(lr, device=d.device) if self.use_graph else lr)
            state = ckpt.load(run.out / "checkpoint.pt")
            if state is not None:
                self._load_state(run, state["model"])
                run.optimizer.load_state_dict(state["optimizer"])
                run.step = run.resumed_from = int(state["step"])
                run.best = state.get("best")
                if d.is_main:
                    print(f"cell {run.cell.label}: resuming from step {run.step} ({run.out / 'checkpoint.pt'})",
                          file=sys.stderr, flush=True)
        return data

    def _batches(self, data: TaskData, run: CellRun, d):
        """This rank's batch of the cell for each step from its ``step`` on: a function of (seed, step) only, so
        a resumed run sees the batches an uninterrupted one would have."""
        cell, s = run.cell, run.cell.settings
        sampler = DistributedSampler(range(len(data.train_index)), num_replicas=d.world_size, rank=d.rank,
                                     shuffle=True, seed=cell.seed, drop_last=True)
        per_epoch = len(sampler) // s.batch_size
        if per_epoch == 0:
            raise UserError(f"cell {cell.label}: {len(sampler)} training samples per rank, fewer than batch_size {s.batch_size}")
        order: list[int] = []
        epoch_loaded = -1
        while True:
            epoch, j = divmod(run.step, per_epoch)
            if epoch != epoch_loaded:
                sampler.set_epoch(epoch)
                order, epoch_loaded = list(sampler), epoch
            index = [data.train_index[i] for i in order[j * s.batch_size:(j + 1) * s.batch_size]]
            yield {k: v.to(d.device) for k, v in data.batch(index).items()}

    def _graphed(self, d) -> bool:
        """Whether this run replays its steps as a CUDA graph: asked for, on CUDA, one process (DDP's all-reduce
        would have to be captured too)."""
        if not self.cell.settings.cuda_graph:
            return False
        if d.device.type != "cuda" or d.grouped:
            if d.is_main:
                print(f"cell {self.cell.label}: cuda_graph needs a CUDA device and one process per job; training "
                      f"eagerly on {d.device} with {d.world_size} process(es)", file=sys.stderr, flush=True)
            return False
        return True

    def _prepare_step(self, d) -> tuple[torch.nn.Module, Callable[[dict[str, torch.Tensor]], Any]]:
        """The model of the cells that train now (DDP-wrapped across ranks) and their step, captured as a CUDA
        graph when asked: again whenever a cell leaves the pack."""
        model = self._forward_model(self.active)
        wrapped = DistributedDataParallel(model) if d.grouped and self.active else model
        body = self._step_body(wrapped, list(self.active))
        self.graph_step = GraphedStep(body) if self.use_graph and self.active else None
        return wrapped, body

    def _step_body(self, wrapped: torch.nn.Module, runs: list[CellRun]):
        """One optimiser step of every cell in ``runs`` on its batch (cell-major), returning the [K] losses. A
        cell whose loss is not finite adds nothing to the gradient of the others and takes no step (under a CUDA
        graph the replay has already stepped it: the last checkpoint on disk predates it)."""
        pack_loss = self._pack_loss(runs)
        task = task_entry(self.cell.task).load()

        def body(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            graphed = self.graph_step is not None  # a graph keeps its addresses: gradients are zeroed in place
            for run in runs:
                run.optimizer.zero_grad(set_to_none=not graphed)
            values = task.objective(wrapped, batch, pack_loss, self.cell)
            values.where(torch.isfinite(values), torch.zeros_like(values)).sum().backward()
            if graphed:  # no read back to the host inside a graph: every cell steps
                for run in runs:
                    run.optimizer.step()
            return values

        body.pack_loss = pack_loss  # type: ignore[attr-defined]
        return body

    def _train_step(self, wrapped: torch.nn.Module, body, runs: list[CellRun]) -> tuple[torch.Tensor, PackLoss]:
        """One step of every active cell; a cell whose loss is not finite is stopped with a message instead of
        poisoning its weights."""
        self.in_step = True
        for run in runs:
            run.lr = self._set_lr(run)
        batches = [next(r.batches) for r in runs]
        batch = batches[0] if len(runs) == 1 else {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
        values = self.graph_step(batch) if self.graph_step is not None else body(batch)
        for run, value in zip(runs, values.detach().cpu().tolist()):
            if not math.isfinite(value):
                run.failure = (f"cell {run.cell.label}: the {run.cell.loss_spec.label} loss is {value} at step "
                               f"{run.step + 1}; lower the learning rate or check the data")
                print(run.failure, file=sys.stderr, flush=True)
                continue
            if self.graph_step is None:
                run.optimizer.step()
            run.step += 1
        self.in_step = False
        return values, body.pack_loss

    def _finish(self, run: CellRun, d) -> dict[str, Any]:
        """Check that every rank ended with the same weights, then write model.pt and result.json (last: its
        presence marks the cell done)."""
        s = run.cell.settings
        best = run.best if s.keep == "best" and run.best is not None else None
        state = best["model"] if best is not None else self._state(run)
        h = hashlib.sha256()
        for name, t in sorted(state.items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        digest = h.hexdigest()
        ranks = [(digest, socket.gethostname())]
        if d.grouped:  # data parallelism is only right if every rank ends with the same weights
            ranks = [None] * d.world_size
            dist.all_gather_object(ranks, (digest, socket.gethostname()))
        digests = [r[0] for r in ranks]
        if len(set(digests)) != 1:
            raise RuntimeError(f"cell {run.cell.label}: ranks ended with different weights {digests}")
        # where the ranks ran and how they met, so a multi-node run can be checked after the fact
        result = {"cell": run.cell.label, "steps": run.step, "weights_sha256": digest, "rank_digests": digests,
                  "world_size": d.world_size, "rank_hosts": [r[1] for r in ranks],
                  "rendezvous": d.rendezvous,  # rank 0's: the store it made (file, or tcp bound to its address)
                  "master_addr": os.environ.get("MASTER_ADDR") if d.grouped else None,
                  "resumed_from_step": run.resumed_from, "pack_cells": len(self.runs),
                  "kept": "best" if best is not None else "last", "kept_step": best["step"] if best else run.step,
                  **({"select_on": s.select_on, "selected_value": best["value"]} if best else {}),
                  **{k: v for k, v in run.last.items() if k != "step"}}
        if d.is_main:
            ckpt.save(run.out / "model.pt", {"model": state, "step": best["step"] if best else run.step})
            write_text(run.out / RESULT, json.dumps(result, indent=1))
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


def _cell(cell: CellConfig | dict | str) -> CellConfig:
    if isinstance(cell, str):
        return CellConfig.model_validate_json(cell)
    if isinstance(cell, dict):
        return CellConfig.model_validate(cell)
    return cell


def run(cell: CellConfig | dict | str, out_dir: str | Path, progress: bool = True, trainer_hook=None) -> dict[str, Any]:
    """Train one cell into ``out_dir``; resumes from ``out_dir/checkpoint.pt`` when present."""
    return run_pack([cell], [out_dir], progress, trainer_hook)[0]


def run_pack(cells: Sequence[CellConfig | dict | str], out_dirs: Sequence[str | Path], progress: bool = True,
             trainer_hook=None) -> list[dict[str, Any] | None]:
    """Train cells that differ only in seed, loss and learning rate as one computation, each into its own
    directory (resuming from its checkpoint there). Their results, in order; None for a cell that another job
    is training (its lock is held)."""
    trainer = Trainer([_cell(c) for c in cells], [Path(o) for o in out_dirs], progress)
    if trainer_hook is not None:
        trainer_hook(trainer)
    return trainer.fit()
