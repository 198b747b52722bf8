"""Paired statistics against MSE: the bootstrap interval of a ratio of means, checked by hand and by its
defining properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr

from fluidperc.analysis.stats import hierarchical_bootstrap, ratios_to_mse


def test_bootstrap_reproduces_a_hand_computed_interval():
    # 2 seeds x 1 test sim. Resamples of the seeds: (0,0) -> 2/1, (0,1) and (1,0) -> 3/1, (1,1) -> 4/1.
    # Sorted [2, 3, 3, 4]; linear quantiles at 2.5% and 97.5%: 2 + 0.075 * 1 = 2.075 and 3 + 0.925 * 1 = 3.925.
    r = hierarchical_bootstrap(np.array([[2.0], [4.0]]), np.array([[1.0], [1.0]]))
    assert r.ratio == 3.0
    assert (r.low, r.high) == pytest.approx((2.075, 3.925))
    assert r.excludes_one and str(r) == "3 [2.08, 3.92]*"


def test_pairing_cancels_what_seeds_and_sims_share():
    """A loss that is 10% worse on every (seed, sim) is 10% worse with certainty, however much the pairs vary."""
    base = np.random.default_rng(2).lognormal(0, 1, (5, 3))  # 5^5 * 3^3 resamples: the random-draw path
    r = hierarchical_bootstrap(1.1 * base, base)
    assert (r.ratio, r.low, r.high) == pytest.approx((1.1, 1.1, 1.1))
    assert r.excludes_one
    same = hierarchical_bootstrap(base, base[::-1])  # the same numbers, unpaired: an interval around 1
    assert same.low < 1 < same.high and not same.excludes_one


def test_one_seed_gives_no_interval_rather_than_a_fake_one():
    r = hierarchical_bootstrap(np.array([[2.0, 3.0]]), np.array([[1.0, 1.0]]))
    assert r.ratio == 2.5 and r.low is None and not r.excludes_one and str(r) == "2.5 (n/a: 1 seed)"


def test_ratios_to_mse_pair_cells_by_seed_and_test_sim_and_skip_missing_seeds():
    values = np.ones((1, 3, 1, 3, 2, 4))  # task, loss, resolution, seed, test_sim, step
    values[0, 1] *= 2.0  # mae twice mse
    values[0, 2, 0, 2] = np.nan  # lsim's third seed is missing
    values[0, 2] *= 0.5
    ds = xr.Dataset({"rel_l2": (("task", "loss", "resolution", "seed", "test_sim", "step"), values)},
                    coords={"task": ["sol"], "loss": ["mse", "mae", "lsim"], "resolution": ["karman_32x16"]})
    out = ratios_to_mse(ds, "sol", "karman_32x16", "rel_l2")
    assert set(out) == {"mae", "lsim"}
    assert (out["mae"].ratio, out["mae"].boot.low, out["mae"].boot.high) == pytest.approx((2, 2, 2))
    assert (out["mae"].t.low, out["mae"].t.high) == pytest.approx((2, 2)) and out["mae"].n_seeds == 3
    assert out["lsim"].n_seeds == 2, "the seed without a result is left out of both intervals"
    assert out["lsim"].ratio == pytest.approx(0.5) and out["lsim"].excludes_one


def test_validation_trend_and_the_share_of_the_gain_come_from_a_line_through_the_last_fifth():
    from fluidperc.analysis.curves import tail_stats, trend_rows

    steps = np.arange(0, 101, 10)
    falling = 1 - 0.001 * steps  # last 20%: steps 80, 90, 100 -> 0.92, 0.91, 0.90; gain since step 0: 0.1
    trend, share = tail_stats(steps, falling)
    assert trend == pytest.approx(-0.001 * 20 / 0.91) and share == pytest.approx(0.02 / 0.1)
    saturating = 0.1 + np.exp(-steps / 10.0)
    assert 0 < tail_stats(steps, saturating)[1] < 0.001
    flat = np.full(len(steps), 0.5)
    assert tail_stats(steps, flat)[0] == pytest.approx(0.0) and np.isnan(tail_stats(steps, flat)[1])
    assert all(np.isnan(tail_stats(steps[:2], falling[:2]))), "two points are no trend"
    rising = np.where(steps < 80, 1 - 0.005 * steps, 0.6 + 0.002 * (steps - 80))  # improved, then got worse
    curves = np.stack([flat, falling, saturating, rising])[:, None, None, None, :]  # loss x (task, res, seed)
    ds = xr.Dataset({"val_rel_l2": (("loss", "task", "resolution", "seed", "val_step"), curves)},
                    coords={"loss": ["flat", "falling", "saturating", "rising"], "task": ["sol"],
                            "resolution": ["k"], "seed": [0], "val_step": steps})
    rows = {row[0]: row[1:] for row in trend_rows(ds, "sol", "k")}
    assert rows["flat"] == ["0.5", "+0.0%", "-", "-"], "no gain at all: no share, no verdict"
    assert rows["falling"] == ["0.9", "-2.2%", "20.0%", "no"]
    assert rows["saturating"][2:] == ["0.0%", "yes"]
    assert rows["rising"] == ["0.64", "+6.5%", "-11.1%", "yes, rising"], "worse at the end: say so"


def test_validation_section_adds_the_val_mse_criterion_only_when_the_store_has_it(tmp_path):
    from fluidperc.analysis.curves import validation_lines

    steps = np.arange(0, 101, 10)
    dims = ("loss", "task", "resolution", "seed", "val_step")
    rel = (1 - 0.001 * steps)[None, None, None, None, :]
    coords = {"loss": ["mse"], "task": ["sr"], "resolution": ["p"], "seed": [0], "val_step": steps}
    only_rel = "\n".join(validation_lines(xr.Dataset({"val_rel_l2": (dims, rel)}, coords=coords), "sr", "p",
                                           tmp_path)).splitlines()
    assert sum(line.startswith("| loss | last val_rel_l2") for line in only_rel) == 1
    assert not any("val_mse" in line for line in only_rel)
    one_panel = png_size(tmp_path / "validation_sr_p.png")
    mse = (0.1 + np.exp(-steps / 10.0))[None, None, None, None, :]
    both = "\n".join(validation_lines(xr.Dataset({"val_rel_l2": (dims, rel), "val_mse": (dims, mse)},
                                                 coords=coords), "sr", "p", tmp_path)).splitlines()
    mse_table = both[both.index(next(line for line in both if line.startswith("| loss | last val_mse"))):]
    assert mse_table[2].startswith("| mse | 0.1 |") and mse_table[2].endswith("| yes |"), mse_table[:3]
    assert (tmp_path / "validation_sr_p.png").stat().st_size > 1000
    two_panels = png_size(tmp_path / "validation_sr_p.png")
    # the figure shows the val_mse curves beside the val_rel_l2 ones: a second panel, as tall and twice as wide
    assert two_panels[1] == one_panel[1] and two_panels[0] > 1.8 * one_panel[0], (one_panel, two_panels)


def png_size(path):
    """(width, height) from a PNG's IHDR chunk."""
    import struct

    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_error_against_time_plots_each_loss_with_a_time_and_needs_two_of_them(tmp_path):
    from fluidperc.analysis.cost import plot_error_against_time

    dims = ("task", "loss", "resolution", "seed", "test_sim", "step")
    err = np.full((1, 3, 1, 2, 1, 4), 0.1)
    secs = np.array([0.02, 0.01, np.nan])[None, :, None, None] * np.ones((1, 3, 1, 2))
    ds = xr.Dataset({"rel_l2": (dims, err), "seconds_per_frame": (dims[:4], secs)},
                    coords={"task": ["ae"], "loss": ["mse", "lsim", "mae"], "resolution": ["k"], "seed": [0, 1]})
    assert plot_error_against_time(ds, "ae", "k", tmp_path / "a.png") and (tmp_path / "a.png").stat().st_size > 1000
    one = ds.sel(loss=["mse", "mae"])  # mae has no time: one point is no comparison
    assert not plot_error_against_time(one, "ae", "k", tmp_path / "b.png") and not (tmp_path / "b.png").exists()


def test_seed_t_interval_of_log_ratios_reproduces_a_hand_computation():
    """3 seeds whose ratios are 2, 4 and 8: log2 ratios 1, 2, 3; mean 2, sample SD 1, t(0.975, 2) = 4.3027;
    the interval is 2^(2 +- 4.3027 / sqrt(3)) around the geometric mean 4."""
    from fluidperc.analysis.stats import seed_t_interval

    base = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    values = np.array([[2.0, 2.0], [4.0, 4.0], [8.0, 8.0]])
    r = seed_t_interval(values, base)
    half = 4.302652729911275 / np.sqrt(3) * np.log(2)
    assert r.ratio == pytest.approx(4.0)
    assert (r.low, r.high) == pytest.approx((4 * np.exp(-half), 4 * np.exp(half)))


def test_hierarchical_bootstrap_resamples_trajectories_within_each_drawn_seed():
    """2 seeds x 2 trajectories, enumerated: 4 seed draws x (4 trajectory draws)^2 = 64 resamples, checked
    against a direct enumeration of the scheme."""
    from fluidperc.analysis.stats import hierarchical_bootstrap

    values = np.array([[1.0, 3.0], [2.0, 6.0]])
    base = np.ones((2, 2))
    ratios = []
    for seeds in itertools.product(range(2), repeat=2):
        for t0 in itertools.product(range(2), repeat=2):
            for t1 in itertools.product(range(2), repeat=2):
                draw = [values[seeds[0], list(t0)], values[seeds[1], list(t1)]]
                ratios.append(np.mean(draw) / 1.0)
    r = hierarchical_bootstrap(values, base)
    assert len(ratios) == 64 and r.ratio == pytest.approx(3.0)
    assert (r.low, r.high) == pytest.approx(tuple(np.quantile(ratios, [0.025, 0.975])))


def test_a_difference_counts_only_where_both_intervals_exclude_one_and_here_they_disagree():
    """Three seeds, each 20% better on its two test trajectories but by very different margins in log terms
    (0.45x, 0.95x, 0.98x): the bootstrap over 3 seeds excludes 1, the t-interval with 2 degrees of freedom does
    not; the table marks nothing."""
    from fluidperc.analysis.stats import compare

    base = np.array([[1.0, 1.2], [1.0, 1.2], [1.0, 1.2]])
    values = base * np.array([[0.45], [0.95], [0.98]])
    c = compare(values, base)
    assert c.boot.excludes_one and not c.t.excludes_one
    assert not c.excludes_one and "*" not in str(c)
    assert c.n_seeds == 3
    clear = compare(base * 0.8, base)  # the same 20% on every seed: both exclude 1
    assert clear.excludes_one and str(clear).endswith("*")
