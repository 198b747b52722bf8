"""A training step replayed as one CUDA graph (``train.settings.cuda_graph: true``).

On a GPU, SOL's step is launch-bound: PhiFlow issues ~2300 small kernels per step from Python while the device
computes for ~31 ms (BENCHMARKS.md). A CUDA graph records the step's kernels once and replays them without the
Python that issued them. Requirements, all met by the tasks here: the same batch shapes every step (the sampler's
batches are), no reads back to the host inside the step, and an optimiser that keeps its step count on the device
(Adam with ``capturable=True``). The batch is copied into the graph's own input tensors before each replay.

The first ``warm_up`` steps run eagerly on a side stream (they are real steps: PhiFlow's compiled parts run
eagerly once, then trace, and capture needs them traced); the next step is captured and then replayed, and every
step after it is a replay. A non-finite loss is seen only after the replay has updated the weights: the cell
stops with the same message as the eager path, and the last checkpoint on disk is from before it.
"""

from __future__ import annotations

from typing import Callable

import torch


class GraphedStep:
    def __init__(self, step: Callable[[dict[str, torch.Tensor]], torch.Tensor], warm_up: int = 3):
        """``step(batch)`` zeroes the gradients (set_to_none=False), computes the loss, backpropagates and steps
        the optimiser, returning the loss tensor."""
        self.step = step
        self.warm_up = warm_up
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: dict[str, torch.Tensor] = {}
        self.loss: torch.Tensor | None = None
        self.side = torch.cuda.Stream()

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        if self.calls <= self.warm_up:
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                value = self.step(batch)
            torch.cuda.current_stream().wait_stream(self.side)
            return value.detach()
        if self.graph is None:
            self.inputs = {k: v.clone() for k, v in batch.items()}
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.loss = self.step(self.inputs).detach()
        else:
            for k, v in batch.items():
                self.inputs[k].copy_(v)
        self.graph.replay()
        return self.loss.clone()
