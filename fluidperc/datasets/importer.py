"""Imported datasets into the stores' layout. The source is checked against its spec (variables, dims, grid,
sims) before anything is written, copied one sim at a time into a store at its own grid and a cell-averaged one
at ``resolution // factor``, refused on non-finite values, given statistics as simulated stores are, and both
stores appear whole (written beside, then renamed into place): an interrupted import leaves no store that looks
finished, and a relaunch imports again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fluidperc.atomic import swap_in, unique_sibling
from fluidperc.datasets import layout, store
from fluidperc.datasets.import_spec import DIMS, ImportSpec
from fluidperc.datasets.sources import default_source, source_entry
from fluidperc.errors import UserError
from fluidperc.plugins import import_plugins

if TYPE_CHECKING:
    import xarray as xr

LAYOUT = "centred"  # velocity components at cell centres, dims (sim, frame, y, x) like the marker


def _where(spec: ImportSpec) -> str:
    return f"datagen.imports '{spec.name}' ({spec.path})"


def open_mapped(spec: ImportSpec) -> "xr.Dataset":
    """The source with our variable and dim names, each variable (sim, frame, y, x); one-paragraph errors for a
    missing path or variable, wrong dims, a grid other than ``resolution`` and test sims out of range."""
    path = Path(spec.path)
    if not path.exists():
        raise UserError(f"{_where(spec)}: no such file or folder; expected a Zarr store, a NetCDF file or a folder "
                        "of .npz frames. Nothing was imported.")
    source = spec.source or default_source(path)
    try:
        ds = source_entry(source).open(path)
    except UserError:
        raise
    except Exception as err:  # a reader's own error: say which reader, which path, and what it said
        import xarray as xr
        from xarray.backends import list_engines

        raise UserError(f"{_where(spec)}: the '{source}' reader cannot open it ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}); xarray here reads with the engines "
                        f"{', '.join(list_engines())} (NetCDF4/HDF5 files need `pip install h5netcdf`, xarray "
                        f"{xr.__version__}). Nothing was imported.") from None
    available = sorted(map(str, ds.data_vars)) + sorted(map(str, ds.coords))
    missing = {ours: theirs for ours, theirs in spec.variables.items() if theirs not in ds.variables}
    if missing:
        raise UserError(f"{_where(spec)}: variables maps {', '.join(f'{k} -> {v!r}' for k, v in missing.items())}, "
                        f"which the source does not hold; it holds {', '.join(available) or 'nothing'}. Nothing was "
                        "imported.")
    theirs_to_ours = {spec.dims.get(d, d): d for d in DIMS}
    out = {}
    for ours, theirs in spec.variables.items():
        var = ds[theirs]
        mapped = tuple(theirs_to_ours.get(str(d), str(d)) for d in var.dims)
        if sorted(mapped) != sorted(DIMS):
            raise UserError(
                f"{_where(spec)}: variable {theirs!r} (for {ours}) has dims ({', '.join(map(str, var.dims))}), which "
                f"map to ({', '.join(mapped)}); expected the four dims {', '.join(DIMS)}. Name the source's dims "
                f"under dims, e.g. dims: {{sim: run, frame: time, y: lat, x: lon}}. Nothing was imported.")
        var = var.rename({str(d): m for d, m in zip(var.dims, mapped)}).transpose(*DIMS)
        if (var.sizes["y"], var.sizes["x"]) != tuple(spec.resolution):
            raise UserError(f"{_where(spec)}: variable {theirs!r} is {var.sizes['y']}x{var.sizes['x']} (y x x), but "
                            f"resolution says {spec.resolution[0]}x{spec.resolution[1]}. Nothing was imported.")
        out[ours] = var.drop_vars([c for c in var.coords if c not in DIMS])
    sizes = {k: (v.sizes["sim"], v.sizes["frame"]) for k, v in out.items()}
    if len(set(sizes.values())) != 1:
        raise UserError(f"{_where(spec)}: the variables differ in sims or frames ({sizes}); every variable needs "
                        "the same sims and frames. Nothing was imported.")
    n_sims, n_frames = next(iter(sizes.values()))
    if max(spec.test_sims) >= n_sims or len(spec.test_sims) >= n_sims:
        raise UserError(f"{_where(spec)}: test_sims {spec.test_sims} with {n_sims} sims in the source; expected "
                        f"indices below {n_sims} that leave at least one training sim. Nothing was imported.")
    if n_frames < 2:
        raise UserError(f"{_where(spec)}: {n_frames} frame(s) per sim; expected at least 2. Nothing was imported.")
    mapped = ds.__class__(out)
    if spec.reynolds is not None:
        if spec.reynolds not in ds.variables:
            raise UserError(f"{_where(spec)}: reynolds names {spec.reynolds!r}, which the source does not hold; it "
                            f"holds {', '.join(available)}. Nothing was imported.")
        re = ds[spec.reynolds]
        if re.ndim != 1 or re.size != n_sims:
            raise UserError(f"{_where(spec)}: reynolds variable {spec.reynolds!r} has shape {re.shape}; expected one "
                            f"value per sim ({n_sims}). Nothing was imported.")
        mapped = mapped.assign_coords(reynolds=("sim", np.asarray(re.values, dtype=np.float64)))
    return mapped


def expected_attrs(spec: ImportSpec, which: str) -> dict[str, Any]:
    ny, nx = spec.resolution if which == "high" else spec.low_resolution
    width, height = spec.domain or (float(spec.resolution[1]), float(spec.resolution[0]))
    return {
        "dataset": spec.name,
        "description": f"imported from {spec.path}",
        "layout": LAYOUT,
        "domain": [width, height],
        "resolution": [ny, nx],
        "dt": spec.dt,
        "source": f"imported ({spec.source or default_source(Path(spec.path))}) from {spec.path}" if which == "high"
        else f"cell averages (factor {spec.factor}) of {spec.name}_{spec.resolution[0]}x{spec.resolution[1]}",
        "factor": 1 if which == "high" else spec.factor,
        "spec": json.loads(spec.model_dump_json()),
    }


def is_imported(spec: ImportSpec, data_dir: Path) -> bool:
    """True when both stores hold this spec's import, finished (statistics written); False when either is absent.
    A store that holds another import (or a simulated dataset) under the same name is refused."""
    done = True
    for path, which in zip(spec.store_paths(data_dir), ("high", "low")):
        if not path.exists():
            done = False
            continue
        attrs = dict(store.open_group(path, "r").attrs)
        if attrs.get("spec") != expected_attrs(spec, which)["spec"]:
            raise UserError(f"{path} already holds another dataset (its spec is {attrs.get('spec')}); the sweep's "
                            f"{_where(spec)} would replace it. Use another data_dir or name, or move it away "
                            f"(`mv {path} {path}.other`) and relaunch.")
        done = done and store.has_statistics(path)
    return done


def _create(path: Path, spec: ImportSpec, which: str, n_sims: int, n_frames: int, reynolds: np.ndarray) -> Any:
    import zarr

    attrs = expected_attrs(spec, which)
    ny, nx = attrs["resolution"]
    width, height = attrs["domain"]
    group = zarr.open_group(str(path), mode="w")
    for var in spec.variables:
        arr = group.create_array(var, shape=(n_sims, n_frames, ny, nx), chunks=(1, min(50, n_frames), ny, nx),
                                 dtype="float32", fill_value=np.nan, dimension_names=list(DIMS))
        arr.attrs.update({"coordinates": "time reynolds is_test", "long_name": var.replace("_", " ") +
                          (" (cell centres)" if var.startswith("velocity") else "")})
    group.create_array("complete", shape=(n_sims,), chunks=(1,), dtype="bool", fill_value=False,
                       dimension_names=["sim"])
    is_test = np.isin(np.arange(n_sims), spec.test_sims)
    coords = {"sim": ("sim", np.arange(n_sims)), "frame": ("frame", np.arange(n_frames)),
              "time": ("frame", np.arange(n_frames) * spec.dt), "y": ("y", (np.arange(ny) + 0.5) * height / ny),
              "x": ("x", (np.arange(nx) + 0.5) * width / nx), "reynolds": ("sim", reynolds), "is_test": ("sim", is_test)}
    for name, (dim, values) in coords.items():
        arr = group.create_array(name, shape=values.shape, dtype=values.dtype, dimension_names=[dim])
        arr[:] = values
    group.attrs.update({**attrs, "versions": store.versions()})
    return group


def _cell_average(a: np.ndarray, factor: int) -> np.ndarray:
    """[frame, y, x] -> [frame, y // f, x // f], the mean over each f x f block."""
    f, ny, nx = a.shape
    return a.reshape(f, ny // factor, factor, nx // factor, factor).mean(axis=(2, 4), dtype=np.float64).astype(np.float32)


def import_dataset(spec_json: str, data_dir: str, plugins: tuple[str, ...] = ()) -> dict[str, Any]:
    """The import job: both stores of the spec under ``data_dir``, with statistics; a no-op when they are there."""
    from tqdm import tqdm

    import_plugins(plugins)
    spec = ImportSpec.model_validate_json(spec_json)
    root = Path(data_dir)
    if is_imported(spec, root):
        return {"imported": False}
    ds = open_mapped(spec)
    n_sims, n_frames = ds.sizes["sim"], ds.sizes["frame"]
    reynolds = ds["reynolds"].values if "reynolds" in ds.coords else np.full(n_sims, np.nan)
    root.mkdir(parents=True, exist_ok=True)
    paths = spec.store_paths(root)
    tmps = [unique_sibling(p, "importing") for p in paths]
    try:
        high, low = (_create(t, spec, w, n_sims, n_frames, reynolds) for t, w in zip(tmps, ("high", "low")))
        for sim in tqdm(range(n_sims), desc=f"import {spec.name}", unit="sim", disable=None):
            for var, theirs in spec.variables.items():
                a = np.asarray(ds[var].isel(sim=sim).values, dtype=np.float32)
                bad = ~np.isfinite(a)
                if bad.any():
                    frame = int(np.argwhere(bad)[0][0])
                    raise UserError(f"{_where(spec)}: variable {theirs!r} (for {var}) of sim {sim} has {int(bad.sum())} "
                                    f"non-finite values (NaN or inf), the first in frame {frame}. Clean the source or "
                                    "leave that sim out; nothing was imported.")
                high[var][sim] = a
                low[var][sim] = _cell_average(a, spec.factor)
            for tmp, group in zip(tmps, (high, low)):  # read back: the checksum vouches for what is stored
                store.record_checksums(tmp, {sim: {v: layout.frames_sha256(group[v][sim]) for v in spec.variables}},
                                       shared=False)
            high["complete"][sim] = True
            low["complete"][sim] = True
        stats = {}
        for tmp, path in zip(tmps, paths):
            stats[path.name] = store.compute_statistics(tmp)
            store.write_statistics(tmp, stats[path.name])
        for tmp, path in zip(tmps, paths):
            swap_in(tmp, path, replace=True)
    finally:
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"imported": True, "sims": n_sims, "frames": n_frames, "statistics": stats}
