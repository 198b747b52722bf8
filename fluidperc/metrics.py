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


# PDEBench's Fourier bands (its metric_func: iLow = 4, iHigh = 12), in units of the fundamental wavenumber
BANDS = {"low": (0, 4), "mid": (4, 12), "high": (12, None)}


def radial_wavenumber(h: int, w: int) -> torch.Tensor:
    """|k| of each FFT mode of an [H, W] field, rounded, in units of the x fundamental (as energy_spectrum)."""
    ky = torch.fft.fftfreq(h, d=1 / h).abs()
    kx = torch.fft.fftfreq(w, d=1 / w).abs()
    return torch.sqrt(ky[:, None] ** 2 * (w / h) ** 2 + kx[None, :] ** 2).round().long()


def band_rmse(pred: torch.Tensor, ref: torch.Tensor) -> dict[str, np.ndarray]:
    """Fourier-band RMSE per frame (PDEBench's fRMSE): the error's orthonormal 2-D FFT per channel, the root mean
    square of its modes whose |k| lies in each band, averaged over channels. With the orthonormal transform the
    mean over all modes equals the mean squared error in space (Parseval). A band with no mode on the grid
    (high, below 24 points a side) is NaN."""
    err = torch.fft.fft2((pred - ref).double(), norm="ortho").abs() ** 2  # N, C, H, W
    k = radial_wavenumber(*pred.shape[-2:])
    out = {}
    for name, (lo, hi) in BANDS.items():
        mask = (k >= lo) & (k < hi) if hi is not None else k >= lo
        if not bool(mask.any()):
            out[f"frmse_{name}"] = np.full(pred.shape[0], np.nan)
            continue
        out[f"frmse_{name}"] = torch.sqrt(err[..., mask].mean(dim=-1)).mean(dim=1).numpy()
    return out


CORRELATION_THRESHOLD = 0.8  # Kochkov et al. 2021; PDE-Refiner (Lippe et al. 2023)


def trajectory_metrics(pred: torch.Tensor, ref: torch.Tensor, dx: float, dy: float,
                       rollout: bool) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """Metrics of whole test trajectories [sim, frame, C, H, W] (rollout steps or evaluated frames):

    - ``nrmse`` [sim, frame]: per channel, the frame's RMSE over the reference's RMS over all evaluated frames
      of that trajectory, averaged over channels (PDEBench, The Well);
    - ``pooled_rel_l2`` [sim]: the L2 norm of the error over all evaluated frames at once over the reference's
      (near-empty frames weigh what their energy weighs, not one frame's share);
    - rollouts of a velocity only: ``vorticity_correlation`` [sim, step], the Pearson correlation of predicted and
      reference vorticity per step, and ``high_correlation_time`` [sim], the first rollout step at which it falls
      below 0.8 (the rollout's length + 1 when it never does: the value is censored there).
    """
    pred, ref = pred.double(), ref.double()
    err = pred - ref
    rms_ref = ref.pow(2).mean(dim=(1, 3, 4)).sqrt().clamp_min(1e-30)  # sim, C
    rmse = err.pow(2).mean(dim=(3, 4)).sqrt()  # sim, frame, C
    out = {"nrmse": (("test_sim", "step"), (rmse / rms_ref[:, None, :]).mean(dim=2).numpy()),
           "pooled_rel_l2": (("test_sim",), (err.flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1).clamp_min(1e-30))
                             .numpy())}
    if rollout and pred.shape[2] == 2:
        wp = vorticity(pred.flatten(0, 1), dx, dy).flatten(1)
        wr = vorticity(ref.flatten(0, 1), dx, dy).flatten(1)
        wp, wr = wp - wp.mean(dim=1, keepdim=True), wr - wr.mean(dim=1, keepdim=True)
        corr = (wp * wr).sum(dim=1) / (wp.norm(dim=1) * wr.norm(dim=1)).clamp_min(1e-30)
        corr = corr.view(pred.shape[0], pred.shape[1])
        below = corr < CORRELATION_THRESHOLD
        first = torch.where(below.any(dim=1), below.float().argmax(dim=1) + 1,
                            torch.full((pred.shape[0],), pred.shape[1] + 1))
        out["vorticity_correlation"] = (("test_sim", "step"), corr.numpy())
        out["high_correlation_time"] = (("test_sim",), first.double().numpy())
    return out
