"""The one place fluidperc compiles PhiFlow functions, and the phiml fix that makes compiled steps differentiable.

phiml's ``jit_compile`` traces with torch.jit.trace/script, which torch 2.14 marks deprecated: everything goes
through :func:`compile_step` so the mechanism can be swapped in one place.

The fix: phiml's ``TorchBackend.reshape`` calls ``Tensor.view`` on contiguous inputs. A trace records that
``view``; when autograd later replays the trace on gradients whose strides differ, it fails ("view size is not
compatible with input tensor's size and stride"), about half the time depending on the seed. ``torch.reshape``
returns the same view when one exists and copies otherwise, so it is always valid. Solver-in-the-Loop training
differentiates through compiled steps and needs this.
"""

from __future__ import annotations

from typing import Callable

import torch
from phiml.backend.torch._torch_backend import TorchBackend

_ORIGINAL_RESHAPE = TorchBackend.reshape


def _reshape(self: TorchBackend, value, shape):
    if not shape:
        return value
    return torch.reshape(self.as_tensor(value), shape)


def patch_phiml_reshape() -> None:
    """Idempotent; applied by every Simulation when it is built (never at import time)."""
    TorchBackend.reshape = _reshape


def phiml_reshape_is_patched() -> bool:
    return TorchBackend.reshape is _reshape


def compile_step(fn: Callable, auxiliary_args: str = "") -> Callable:
    """Compile a PhiFlow function (phiml jit). Call it once eagerly on real fields before the first compiled
    call: a trace of constant fields (e.g. an all-zero marker) runs 3-4x slower."""
    from phiml import math

    return math.jit_compile(fn, auxiliary_args=auxiliary_args)
