"""Several cells as one computation (``train.cells_per_task``): their networks side by side in one model, their
losses each on its own slice of the samples.

A packed batch is cell-major: cell 0's samples, then cell 1's, and so on, each drawn by that cell's own sampler.
Everything the cells share (normalisation, SOL's solver) runs once on the whole batch; :class:`PackedNet` gives
each cell's slice to that cell's network, and :class:`PackLoss` returns one value per cell. The networks'
parameters are disjoint, so the backward pass of the values' sum gives every cell exactly its own gradient.

Two ways to run the networks (``train.settings.pack_kernels``):

- ``per_cell``: one call per network, the very kernels a cell alone would run. On the CPU that is as fast as
  it gets (the stacked form becomes grouped convolutions, which oneDNN runs slower than separate ones: see
  BENCHMARKS.md), and a pack's cells end with the weights they would have alone.
- ``stacked``: the parameters stacked and the networks run as one ``torch.func.vmap`` call, one kernel per
  layer for the whole pack (and the cells that share a loss in one loss call): for GPUs, where a small cell
  leaves the device idle between launches.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from fluidperc.losses.base import FieldLoss

KERNELS = ("auto", "per_cell", "stacked")


def resolve_kernels(kernels: str, device: torch.device) -> str:
    """``auto``: stacked on CUDA, per_cell elsewhere."""
    if kernels == "auto":
        return "stacked" if device.type == "cuda" else "per_cell"
    return kernels


class PackedNet(nn.Module):
    """K networks of one architecture as one module: ``[K*B, ...]`` in (cell-major), ``[K*B, ...]`` out."""

    def __init__(self, nets: Sequence[nn.Module], stacked: bool = False):
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.stacked = stacked
        # the architecture without storage: vmap calls it with each cell's parameters (not a submodule, so that
        # it holds no parameters of its own)
        self.__dict__["_skeleton"] = copy.deepcopy(nets[0]).to("meta") if stacked else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = len(self.nets)
        if x.shape[0] % k:
            raise ValueError(f"a packed batch of {x.shape[0]} samples does not split into {k} cells")
        if not self.stacked:
            return torch.cat([net(part) for net, part in zip(self.nets, x.chunk(k))])
        params = {name: torch.stack([dict(net.named_parameters())[name] for net in self.nets])
                  for name, _ in self.nets[0].named_parameters()}
        buffers = {name: torch.stack([dict(net.named_buffers())[name] for net in self.nets])
                   for name, _ in self.nets[0].named_buffers()}
        skeleton = self._skeleton

        def one(p, b, xs):
            return functional_call(skeleton, (p, b), (xs,))

        return vmap(one)(params, buffers, x.unflatten(0, (k, -1))).flatten(0, 1)


def _per_sample_ok(loss: nn.Module) -> bool:
    """Whether the loss (every term of a sum) says what each sample costs (FieldLoss.per_sample)."""
    terms = getattr(loss, "terms", None)
    if terms is not None:
        return all(_per_sample_ok(t) for t in terms)
    return type(loss).per_sample is not FieldLoss.per_sample


class PackLoss:
    """The loss of each of K cells on its slice of the samples, as a tensor [K] (a task's objective adds and
    scales loss values, which [K] values follow elementwise). ``terms[i]``: cell i's weighted terms of a sum
    in the last call, for the training log. With ``grouped``, cells that share a loss module get one call on
    all their samples (its ``per_sample`` values, averaged per cell)."""

    def __init__(self, losses: Sequence[nn.Module], grouped: bool = False):
        self.losses = list(losses)
        self.terms: list[dict[str, torch.Tensor]] = [{} for _ in self.losses]
        groups: dict[int, list[int]] = {}
        for i, loss in enumerate(self.losses):
            groups.setdefault(id(loss), []).append(i)
        self.groups = [(idx, self.losses[idx[0]]) for idx in groups.values()]
        self.grouped = grouped

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = len(self.losses)
        if k == 1:  # a cell alone: its loss on every sample, exactly as it always was
            value = self.losses[0](pred, target)
            self.terms[0] = dict(getattr(self.losses[0], "last_terms", None) or {})
            return value.reshape(1)
        if pred.shape[0] % k:
            raise ValueError(f"a packed loss call of {pred.shape[0]} samples does not split into {k} cells")
        preds, targets = pred.chunk(k), target.chunk(k)
        values: list[torch.Tensor | None] = [None] * k
        for idx, loss in self.groups:
            if self.grouped and len(idx) > 1 and _per_sample_ok(loss):
                per = loss.per_sample(torch.cat([preds[i] for i in idx]), torch.cat([targets[i] for i in idx]))
                means = per.view(len(idx), -1).mean(dim=1)
                parts = {label: v.view(len(idx), -1).mean(dim=1)
                         for label, v in (getattr(loss, "last_terms", None) or {}).items()}
                for j, i in enumerate(idx):
                    values[i] = means[j]
                    self.terms[i] = {label: v[j] for label, v in parts.items()}
                continue
            for i in idx:
                values[i] = loss(preds[i], targets[i])
                self.terms[i] = dict(getattr(loss, "last_terms", None) or {})
        return torch.stack(values)
