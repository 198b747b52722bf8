"""The evaluation's metrics, each against a value computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fluidperc.metrics import band_rmse, energy_spectrum, pixel_metrics, trajectory_metrics


def test_nrmse_normalises_each_channel_by_the_references_rms_over_all_evaluated_frames():
    """One sim, two frames, two channels. Reference: channel 0 is 1 then 3 (RMS over both frames sqrt(5)), channel
    1 is 2 everywhere (RMS 2). Error: channel 0 off by 1 in frame 0 and 0 in frame 1; channel 1 off by 0.5 in both.
    nRMSE frame 0 = (1/sqrt(5) + 0.5/2) / 2, frame 1 = (0 + 0.25) / 2."""
    ref = torch.zeros(1, 2, 2, 4, 4)
    ref[0, 0, 0], ref[0, 1, 0], ref[0, :, 1] = 1.0, 3.0, 2.0
    pred = ref.clone()
    pred[0, 0, 0] += 1.0
    pred[0, :, 1] += 0.5
    out = trajectory_metrics(pred, ref, 1.0, 1.0, rollout=False)
    dims, nrmse = out["nrmse"]
    assert dims == ("test_sim", "step")
    assert nrmse[0] == pytest.approx([(1 / math.sqrt(5) + 0.25) / 2, 0.125])


def test_pooled_relative_l2_weighs_frames_by_their_energy_not_their_count():
    """A near-empty first frame with a large relative error, then a full frame with a small one: per frame the
    mean relative L2 is (1 + 0.01) / 2; pooled it is the full frame's error over the full frame's norm."""
    ref = torch.zeros(1, 2, 1, 10, 10)
    ref[0, 0] = 1e-3
    ref[0, 1] = 1.0
    pred = ref.clone()
    pred[0, 0] += 1e-3  # relative error 1 on the empty frame
    pred[0, 1] += 0.01  # relative error 0.01 on the full one
    per_frame = pixel_metrics(pred[0], ref[0], 1.0, 1.0)["rel_l2"]
    assert per_frame == pytest.approx([1.0, 0.01])
    pooled = trajectory_metrics(pred, ref, 1.0, 1.0, rollout=False)["pooled_rel_l2"][1]
    expected = math.sqrt(100 * 1e-6 + 100 * 1e-4) / math.sqrt(100 * 1e-6 + 100 * 1.0)
    assert pooled[0] == pytest.approx(expected)


def test_fourier_band_rmse_puts_a_single_modes_error_in_its_band():
    """An error that is one cosine of wavenumber 6 along x on a 32x32 grid: all its energy is in the mid band
    (4 <= |k| < 12). Its RMSE in space is a/sqrt(2); the orthonormal FFT puts a^2 N / 4 on each of the two modes
    +-6, so the mid band's RMSE is sqrt(2 * a^2 N / 4 / modes_in_band)."""
    n, a = 32, 0.3
    x = torch.arange(n) * 2 * math.pi / n
    err = a * torch.cos(6 * x)[None, :].expand(n, n)
    ref = torch.zeros(1, 1, n, n)
    out = band_rmse(ref + err, ref)
    from fluidperc.metrics import radial_wavenumber

    k = radial_wavenumber(n, n)
    modes = int(((k >= 4) & (k < 12)).sum())
    assert out["frmse_mid"][0] == pytest.approx(math.sqrt(2 * a**2 * n * n / 4 / modes))
    # float32 rounding of the cosine leaks ~1e-7 into the other bands
    assert out["frmse_low"][0] < 1e-5 * out["frmse_mid"][0] and out["frmse_high"][0] < 1e-5 * out["frmse_mid"][0]
    # Parseval: over all modes, the FFT's mean squared modulus is the mean squared error in space
    spectrum = torch.fft.fft2(err.double(), norm="ortho").abs() ** 2
    assert float(spectrum.mean()) == pytest.approx(a**2 / 2)


def test_a_band_with_no_mode_on_a_small_grid_is_nan_not_zero():
    ref = torch.zeros(2, 2, 16, 8)
    out = band_rmse(ref + 1.0, ref)
    assert np.isnan(out["frmse_high"]).all() and np.isfinite(out["frmse_low"]).all()


def test_high_correlation_time_is_the_first_step_below_0_8_and_censored_after_the_rollout():
    """A reference vorticity field and predictions that mix in an uncorrelated field more at every step: the
    correlation is cos(theta_k) by construction, falling through 0.8 between steps 3 and 4."""
    torch.manual_seed(0)
    n, steps = 16, 6
    dx = dy = 1.0
    a, b = torch.randn(2, n, n, dtype=torch.float64), torch.randn(2, n, n, dtype=torch.float64)
    ref = torch.stack([a] * steps)[None]  # 1 sim, steps, 2, n, n (velocities)
    angles = [0.0, 0.3, 0.5, 0.7, 0.9, 1.1]  # cos: 1, .955, .878, .765, .622, .454
    from fluidperc.metrics import vorticity

    wa, wb = vorticity(a[None], dx, dy)[0], vorticity(b[None], dx, dy)[0]
    wa, wb = wa - wa.mean(), wb - wb.mean()
    # b's vorticity made orthogonal to a's, with a's norm: velocities mix linearly, so vorticities do too
    coef = float((wa * wb).sum() / (wa * wa).sum())
    b = b - coef * a
    scale = float(wa.norm() / (vorticity(b[None], dx, dy)[0] - vorticity(b[None], dx, dy)[0].mean()).norm())
    b = b * scale
    pred = torch.stack([math.cos(t) * a + math.sin(t) * b for t in angles])[None]
    out = trajectory_metrics(pred, ref, dx, dy, rollout=True)
    corr = out["vorticity_correlation"][1][0]
    assert corr == pytest.approx([math.cos(t) for t in angles], abs=1e-9)
    assert out["high_correlation_time"][1][0] == 4
    never = trajectory_metrics(ref, ref, dx, dy, rollout=True)["high_correlation_time"][1]
    assert never[0] == steps + 1, "a rollout that never decorrelates is censored at its length + 1"
    assert "high_correlation_time" not in trajectory_metrics(pred, ref, dx, dy, rollout=False)


def test_spectrum_error_is_the_mean_absolute_log10_ratio_of_the_energy_spectra():
    """Documented as what it is (docs/evaluation.md): mean over k = 1..K of |log10 E_pred(k) - log10 E_ref(k)|. A
    prediction that is the reference scaled by 2 has every E(k) 4x: the error is log10(4)."""
    torch.manual_seed(1)
    ref = torch.randn(1, 2, 32, 32)
    err = pixel_metrics(2 * ref, ref, 1.0, 1.0)["spectrum_error"]
    assert err[0] == pytest.approx(math.log10(4))
    assert energy_spectrum(ref).shape == (1, 15)
