"""A direct pressure solve: PhiFlow's own masked Laplace matrix, factorised once per grid, obstacle and boundary.

The matrix of the pressure Poisson problem is constant for a fixed grid and obstacle, yet an iterative solve
re-runs ~300 CG iterations every step. We build the matrix with PhiFlow's ``masked_laplace`` (the discretisation
``make_incompressible`` uses), factorise it with SuperLU in float64, and solve every sim of a batch at once. The
result matches PhiFlow's CG to its tolerance. The solve is differentiable: its backward pass is a solve with the
transposed factorisation.

On CUDA, a per-step trip through the host (scipy) would stall the GPU twice per step with the backward. Grids of up
to ``DENSE_LIMIT`` cells therefore keep the inverse matrix on the device, computed once in float64 from the same
matrix: a solve is one matrix product, forward and backward (benchmarks/gpu_check.py measures both paths).
Larger grids on CUDA still solve on the host; BENCHMARKS.md says what that costs.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from phi import math
from phi.field import Field
from phi.physics.fluid import masked_laplace


class _LUSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rhs: torch.Tensor, solver: "PoissonSolver") -> torch.Tensor:
        ctx.solver = solver
        return solver.solve_native(rhs, transpose=False)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.solver.solve_native(grad, transpose=True), None


DENSE_LIMIT = 16384  # cells (128 x 128): a float64 inverse of 2 GiB on the device


class PoissonSolver:
    """Solves masked_laplace(p) = rhs for [sim, x, y] right-hand sides with a cached sparse LU factorisation
    (CPU), or a cached dense inverse on a CUDA device for grids up to DENSE_LIMIT cells."""

    def __init__(self, pressure_template: Field, v_boundary, hard_bcs: Field | None, active: Field | None,
                 device: torch.device | None = None):
        self.nx, self.ny = (pressure_template.resolution.get_size(d) for d in ("x", "y"))
        self.template = pressure_template
        zero = pressure_template.with_values(math.zeros(pressure_template.resolution))
        matrix, _ = math.matrix_from_function(
            masked_laplace, zero, v_boundary, hard_bcs, active,
            wide_stencil=False, order=2, implicit=None, upwind=None, correct_skew=False,
        )
        idx = matrix._indices.numpy(["entries", "sparse_idx"])
        names = matrix._indices.shape.get_item_names("sparse_idx")
        col = {n: idx[:, i] for i, n in enumerate(names)}
        n = self.nx * self.ny
        rows = col["x"] * self.ny + col["y"]
        cols = col["~x"] * self.ny + col["~y"]
        a = sp.csr_matrix((matrix._values.numpy(["entries"]).astype(np.float64), (rows, cols)), shape=(n, n))
        # A closed domain without obstacles leaves the pressure defined up to a constant: pin cell 0.
        self.singular = active is None and not v_boundary.is_flexible
        if self.singular:
            a = a.tolil()
            a[0, :] = 0
            a[0, 0] = 1
            a = a.tocsr()
        self.lu = spla.splu(a.tocsc())
        self.device = torch.device("cpu") if device is None else device
        self.inverse: torch.Tensor | None = None
        if self.device.type == "cuda" and n <= DENSE_LIMIT:
            dense = torch.as_tensor(a.toarray(), dtype=torch.float64, device=self.device)
            self.inverse = torch.linalg.inv(dense)

    def _solve_dense(self, rhs: torch.Tensor, transpose: bool) -> torch.Tensor:
        b = rhs.detach().reshape(rhs.shape[0], -1).double()  # B, n
        if self.singular and not transpose:
            b = b - b.mean(dim=1, keepdim=True)
            b[:, 0] = 0.0
        x = b @ (self.inverse if transpose else self.inverse.T)  # rows: (A^-1 b)^T = b^T A^-T
        if self.singular and transpose:
            x[:, 0] = 0.0
            x = x - x.mean(dim=1, keepdim=True)
        return x.to(rhs.dtype).reshape(rhs.shape)

    def solve_native(self, rhs: torch.Tensor, transpose: bool) -> torch.Tensor:
        """rhs [B, nx, ny] -> solution [B, nx, ny] (same dtype and device)."""
        if self.inverse is not None and rhs.device == self.inverse.device:
            return self._solve_dense(rhs, transpose)
        b = rhs.detach().reshape(rhs.shape[0], -1).T.cpu().double().numpy()
        if self.singular and not transpose:
            b = b - b.mean(axis=0, keepdims=True)  # PhiFlow balances the divergence of a closed box likewise
            b[0] = 0.0
        x = self.lu.solve(np.ascontiguousarray(b), trans="T" if transpose else "N")
        if self.singular and transpose:  # the adjoint of "balance, then pin": pin, then balance
            x[0] = 0.0
            x = x - x.mean(axis=0, keepdims=True)
        return torch.from_numpy(x.T.copy()).to(rhs.dtype).to(rhs.device).reshape(rhs.shape)

    def solve_values(self, rhs: math.Tensor) -> math.Tensor:
        """The pressure values for divergence values with a batch dim 'sim'."""
        native = rhs.native(["sim", "x", "y"])
        solution = _LUSolve.apply(native, self)
        return math.tensor(solution, math.batch(sim=native.shape[0]), math.spatial("x,y"))

    def solve(self, rhs: Field) -> Field:
        """The pressure field (template's boundary) for a divergence field with a batch dim 'sim'."""
        return self.template.with_values(self.solve_values(rhs.values))
