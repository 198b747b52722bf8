"""The weighted sum of losses (``{name: sum, terms: [{weight: 1, loss: mse}, {weight: 0.1, loss: lsim}]}``).

Each term is built by the registry like any loss. The value of every term of the last call is kept, weighted, in
``last_terms`` so that training can log which term drives it (metrics.jsonl and TensorBoard).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from fluidperc.losses import get_loss
from fluidperc.losses.base import FieldLoss


class SumLoss(FieldLoss):
    def __init__(self, spec, stats=None, store=None):
        super().__init__()

        self.spec = spec
        self.label = spec.label
        self.weights = [t.weight for t in spec.terms]
        self.term_labels = [t.spec.label for t in spec.terms]
        self.terms = nn.ModuleList(get_loss(t.spec, stats, store) for t in spec.terms)
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, pred: torch.Tensor, target: torch.Tensor, channels: Sequence[int] | None = None) -> torch.Tensor:
        total = pred.new_zeros(())
        parts = {}
        for label, weight, term in zip(self.term_labels, self.weights, self.terms):
            if weight == 0:  # a zero weight (a tuned corner) costs nothing, not a forward pass
                continue
            value = weight * term(pred, target, channels=channels)
            parts[label] = value.detach()
            total = total + value
        self.last_terms = parts
        return total

    def per_sample(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each term's per-sample values, weighted and added; ``last_terms`` holds them per sample [N]."""
        total = pred.new_zeros(pred.shape[0])
        parts = {}
        for label, weight, term in zip(self.term_labels, self.weights, self.terms):
            if weight == 0:
                continue
            value = weight * term.per_sample(pred, target)
            parts[label] = value.detach()
            total = total + value
        self.last_terms = parts
        return total

    def staggered(self, pred, target):
        total = pred[0].new_zeros(())
        parts: dict[str, torch.Tensor] = {}
        for i, (p, t) in enumerate(zip(pred, target, strict=True)):
            total = total + self(p, t, channels=[i])
            for k, v in self.last_terms.items():
                parts[k] = parts.get(k, 0) + v
        self.last_terms = parts
        return total
