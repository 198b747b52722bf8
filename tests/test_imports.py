"""Bring your own data: an outside NetCDF, Zarr or folder of .npz frames, mapped by a few lines of the sweep, becomes
a store pair that AE and SR train on as on simulated stores; its mistakes get one-paragraph errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT

N_SIMS, N_FRAMES, NY, NX = 4, 6, 16, 16


def vortex_fields(seed: int = 0) -> dict[str, np.ndarray]:
    """Decaying, drifting Taylor-Green vortices and a passive blob, [sim, frame, y, x] (float64): a stand-in for
    someone else's solver output, smooth so that the networks have something to learn."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid((np.arange(NY) + 0.5) * 2 * np.pi / NY, (np.arange(NX) + 0.5) * 2 * np.pi / NX, indexing="ij")
    u = np.zeros((N_SIMS, N_FRAMES, NY, NX))
    v, rho = np.zeros_like(u), np.zeros_like(u)
    for s in range(N_SIMS):
        shift, k = rng.uniform(0, 2 * np.pi), 1 + s % 2
        for f in range(N_FRAMES):
            decay, xs = np.exp(-0.1 * f), x - 0.3 * f + shift
            u[s, f] = np.sin(k * xs) * np.cos(k * y) * decay
            v[s, f] = -np.cos(k * xs) * np.sin(k * y) * decay
            rho[s, f] = np.exp(-((np.cos(xs) - 1) ** 2 + (np.cos(y) - 1) ** 2))
    return {"u": u, "v": v, "rho": rho}


def write_netcdf(path: Path, fields: dict[str, np.ndarray]) -> Path:
    """Dims named as another community names them (run, t, lat, lon), with a per-run Re."""
    import xarray as xr

    ds = xr.Dataset({k: (("run", "t", "lat", "lon"), a) for k, a in fields.items()},
                    coords={"re": ("run", np.array([100.0, 200.0, 300.0, 400.0]))})
    ds.to_netcdf(path, engine="scipy")
    return path


def import_entry(path: Path, **extra) -> dict:
    return {"name": "vortex", "path": str(path), "variables": {"velocity_x": "u", "velocity_y": "v", "marker": "rho"},
            "dims": {"sim": "run", "frame": "t", "y": "lat", "x": "lon"}, "resolution": [NY, NX], "factor": 2,
            "test_sims": [3], "domain": [6.0, 6.0], "reynolds": "re", **extra}


def launch(sweep_path: Path, *args: str, timeout: int = 500) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpc.launch", str(sweep_path), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def write(path: Path, sweep: dict) -> Path:
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sr_and_ae_train_on_an_imported_netcdf_and_reach_the_report(tmp_path):
    import xarray as xr

    fields = vortex_fields()
    source = write_netcdf(tmp_path / "vortex.nc", fields)
    data = tmp_path / "data"
    sweep = {
        "name": "byod", "resources": {"cpus_per_task": 1, "time_min": 20},
        "datagen": {"data_dir": str(data), "imports": [import_entry(source)]},
        "train": {"tasks": ["sr", "ae"], "datasets": [{"imported": "vortex", "resolution": [8, 8],
                                                       "high_resolution": [16, 16]}],
                  "losses": ["mse"], "seeds": [0],
                  "settings": {"steps": 3, "batch_size": 2, "validate_every": 3, "checkpoint_every": 3,
                               "val_samples": 2, "compression": 4}},
        "evaluate": {"settings": {"frames": 3, "samples": 2}},
    }
    path = write(tmp_path / "byod.yaml", sweep)
    dry = launch(path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "datagen.import.vortex" in dry.stdout and "vortex_16x16.zarr + vortex_8x8.zarr" in dry.stdout
    run = tmp_path / "run"
    res = launch(path, "--backend", "local", "--out", str(run))
    assert res.returncode == 0, res.stderr[-3000:]

    high, low = xr.open_zarr(data / "vortex_16x16.zarr"), xr.open_zarr(data / "vortex_8x8.zarr")
    assert high.attrs["layout"] == "centred" and high.attrs["domain"] == [6.0, 6.0]
    np.testing.assert_array_equal(high.velocity_x.values, fields["u"].astype(np.float32))
    blocks = fields["rho"].astype(np.float32).reshape(N_SIMS, N_FRAMES, 8, 2, 8, 2).astype(np.float64).mean(axis=(3, 5))
    np.testing.assert_allclose(low.marker.values, blocks, rtol=1e-6)
    assert high.is_test.values.tolist() == [False, False, False, True]
    assert high.reynolds.values.tolist() == [100.0, 200.0, 300.0, 400.0]
    train_u = fields["u"][:3].astype(np.float32).astype(np.float64)
    stats = high.attrs["statistics"]["velocity_x"]
    assert stats["mean"] == pytest.approx(train_u.mean(), abs=1e-9) and stats["std"] == pytest.approx(train_u.std())

    results = xr.open_zarr(run / "results.zarr")
    assert sorted(results.task.values.tolist()) == ["ae", "sr"]
    assert set(results.resolution.values.tolist()) == {"vortex_8x8"}
    assert np.isfinite(results.rel_l2.sel(loss="mse")).all()
    assert results.test_reynolds.values.ravel()[0] == 400.0  # the held-out sim is the fourth
    report = (run / "report" / "report.md").read_text()
    assert "## sr on vortex_8x8" in report and "## ae on vortex_8x8" in report

    again = launch(path, "--backend", "local", "--out", str(run))
    assert again.returncode == 0 and "nothing to submit" in again.stdout, again.stdout[-2000:]


def test_an_npz_folder_imports_to_the_same_stores_as_a_netcdf(tmp_path):
    """The npz reader (one subfolder per sim, one file per frame) and the xarray reader fill identical stores."""
    import xarray as xr

    from fluidperc.datasets.import_spec import ImportSpec
    from fluidperc.datasets.importer import import_dataset

    fields = vortex_fields(seed=3)
    nc = write_netcdf(tmp_path / "v.nc", fields)
    folder = tmp_path / "frames"
    for s in range(N_SIMS):
        (folder / f"sim{s:02d}").mkdir(parents=True)
        for f in range(N_FRAMES):
            np.savez(folder / f"sim{s:02d}" / f"frame{f:04d}.npz", **{k: a[s, f] for k, a in fields.items()})
    from_nc = ImportSpec.model_validate(import_entry(nc, reynolds=None))
    from_npz = ImportSpec.model_validate({**import_entry(folder, reynolds=None), "dims": {}})
    assert import_dataset(from_nc.model_dump_json(), str(tmp_path / "a"))["imported"]
    assert import_dataset(from_npz.model_dump_json(), str(tmp_path / "b"))["imported"]
    assert not import_dataset(from_npz.model_dump_json(), str(tmp_path / "b"))["imported"], "done once"
    for name in ("vortex_16x16.zarr", "vortex_8x8.zarr"):
        a, b = xr.open_zarr(tmp_path / "a" / name), xr.open_zarr(tmp_path / "b" / name)
        for var in ("velocity_x", "velocity_y", "marker"):
            np.testing.assert_array_equal(a[var].values, b[var].values)
        assert a.attrs["statistics"] == b.attrs["statistics"]
        assert np.isnan(b.reynolds.values).all(), "no Re given: NaN, not a made-up value"
    assert b.attrs["source"].startswith("cell averages") and "npz" in xr.open_zarr(tmp_path / "b" / "vortex_16x16.zarr").attrs["source"]


def test_import_mistakes_get_one_paragraph_errors_and_leave_no_store(tmp_path):
    from fluidperc.datasets.import_spec import ImportSpec
    from fluidperc.datasets.importer import import_dataset
    from fluidperc.errors import UserError

    fields = vortex_fields()
    nc = write_netcdf(tmp_path / "v.nc", fields)

    def fails(entry: dict, *expected: str) -> None:
        with pytest.raises(UserError) as err:
            import_dataset(ImportSpec.model_validate(entry).model_dump_json(), str(tmp_path / "data"))
        text = str(err.value)
        assert "\n" not in text and str(entry["path"]) in text and "othing was imported" in text, text
        for part in expected:
            assert part in text, text
        leftovers = list((tmp_path / "data").glob("*")) if (tmp_path / "data").exists() else []
        assert leftovers == [], leftovers

    fails({**import_entry(nc), "variables": {"marker": "density"}}, "marker -> 'density'", "it holds rho, u, v")
    fails({**import_entry(nc), "dims": {"sim": "run"}}, "has dims (run, t, lat, lon)", "expected the four dims sim, frame, y, x")
    fails({**import_entry(nc), "resolution": [32, 32]}, "is 16x16", "resolution says 32x32")
    fails({**import_entry(nc), "test_sims": [4]}, "test_sims [4] with 4 sims")
    fails({**import_entry(tmp_path / "nowhere.nc")}, "no such file or folder")
    bad = dict(fields)
    bad["rho"] = fields["rho"].copy()
    bad["rho"][2, 4, 3, 3] = np.nan
    fails(import_entry(write_netcdf(tmp_path / "nan.nc", bad)), "'rho' (for marker) of sim 2 has 1 non-finite",
          "first in frame 4")


def test_sweep_mistakes_about_imports_are_refused_before_anything_runs(tmp_path):
    nc = write_netcdf(tmp_path / "v.nc", vortex_fields())
    base = {"name": "byod", "datagen": {"data_dir": str(tmp_path / "data"), "imports": [import_entry(nc)]},
            "train": {"tasks": ["sr"], "datasets": [{"imported": "vortex", "resolution": [8, 8],
                                                     "high_resolution": [16, 16]}], "losses": ["mse"]}}

    def refused(sweep: dict, *expected: str) -> None:
        res = launch(write(tmp_path / "s.yaml", sweep), "--dry-run", timeout=120)
        assert res.returncode == 2, (res.stdout, res.stderr)
        text = res.stderr.strip()
        assert text.count("\n") == 0, text
        for part in expected:
            assert part in text, text

    sol = {**base, "train": {**base["train"], "tasks": ["sol"]}}
    refused(sol, "train.datasets.0: task 'sol' steps the scene's solver", "imported dataset 'vortex'")
    grid = {**base, "train": {**base["train"], "datasets": [{"imported": "vortex", "resolution": [4, 4],
                                                             "high_resolution": [16, 16]}]}}
    refused(grid, "train.datasets.0.resolution is [4, 4]", "makes the grids [16, 16] and [8, 8]")
    marker_only = {**base, "datagen": {**base["datagen"], "imports": [{**import_entry(nc), "variables": {"marker": "rho"}}]}}
    refused(marker_only, "trains on the velocity, which the import 'vortex' does not map", "variable: marker")
    both = {**base, "train": {**base["train"], "datasets": [{"scene": "karman", "imported": "vortex",
                                                             "resolution": [8, 8]}]}}
    refused(both, "exactly one of scene (simulated) and imported")
    scene_name = {**base, "datagen": {**base["datagen"], "imports": [{**import_entry(nc), "name": "karman"}]}}
    refused(scene_name, "'karman' is a registered scene")
    velocity_half = {**base, "datagen": {**base["datagen"], "imports": [{**import_entry(nc), "variables": {"velocity_x": "u"}}]}}
    refused(velocity_half, "a velocity needs both velocity_x and velocity_y")
    missing = {**base, "datagen": {**base["datagen"], "imports": [{**import_entry(tmp_path / "gone.nc")}]}}
    refused(missing, "datagen.imports.0.path", "does not exist")
