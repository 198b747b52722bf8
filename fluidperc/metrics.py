"""Per-frame error metrics between predicted and reference fields [N, C, H, W] (velocity: C = 2, x then y)."""

from __future__ import annotations

import numpy as np
import torch

from fluidperc.losses import FieldLoss
from fluidperc.losses.registry import metric_specs

PIXEL_METRICS = ("mse", "mae", "rel_l2", "vorticity_rmse", "spectrum_error")


def perceptual_metric_specs() -> dict:
    """The losses registered as metrics (fluidperc.losses.registry), each with the spec it is computed with."""
    return metric_specs()


def vorticity(uv: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """dv/dx - du/dy at cell centres (central differences, one-sided at the edges): [N, 2, H, W] -> [N, H, W]."""
    u, v = uv[:, 0], uv[:, 1]
    return torch.gradient(v, spacing=dx, dim=2)[0] - torch.gradient(u, spacing=dy, dim=1)[0]


def energy_spectrum(uv: torch.Tensor) -> torch.Tensor:
    """Radially averaged kinetic-energy spectrum E(k), k = 1 .. min(H, W) // 2: [N, 2, H, W] -> [N, K]."""
    n, _, h, w = uv.shape
    e = 0.5 * (torch.fft.fft2(uv.double(), norm="ortho").abs() ** 2).sum(dim=1)  # N, H, W
    ky = torch.fft.fftfreq(h, d=1 / h).abs()
    kx = torch.fft.fftfreq(w, d=1 / w).abs()
    k = torch.sqrt(ky[:, None] ** 2 * (w / h) ** 2 + kx[None, :] ** 2).round().long()  # in units of the x wavenumber
    kmax = min(h, w) // 2
    out = torch.zeros(n, kmax + 1, dtype=torch.float64)
    out.index_add_(1, k.flatten().clamp(max=kmax), e.reshape(n, -1))
    return out[:, 1:kmax]


def pixel_metrics(pred: torch.Tensor, ref: torch.Tensor, dx: float, dy: float) -> dict[str, np.ndarray]:
    """One value per frame for each pixel metric."""
    diff = pred - ref
    dims = (1, 2, 3)
    out = {
        "mse": (diff**2).mean(dim=dims),
        "mae": diff.abs().mean(dim=dims),
        "rel_l2": diff.flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1).clamp_min(1e-12),
    }
    if pred.shape[1] == 2:
        w = vorticity(pred, dx, dy) - vorticity(ref, dx, dy)
        out["vorticity_rmse"] = torch.sqrt((w**2).mean(dim=(1, 2)))
        ep, er = energy_spectrum(pred), energy_spectrum(ref)
        out["spectrum_error"] = (torch.log10(ep + 1e-30) - torch.log10(er + 1e-30)).abs().mean(dim=1)
    return {k: v.detach().double().numpy() for k, v in out.items()}


def perceptual_metrics(pred: torch.Tensor, ref: torch.Tensor, losses: dict[str, FieldLoss]) -> dict[str, np.ndarray]:
    """Per-frame perceptual distances (summed over channels, as the losses)."""
    out = {}
    with torch.no_grad():
        for name, loss in losses.items():
            out[name] = np.array([float(loss(pred[i : i + 1], ref[i : i + 1])) for i in range(pred.shape[0])])
    return out
