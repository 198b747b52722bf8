"""A published run as a handful of files, so that a study can be committed, moved to another machine, reported on
and continued without the hundreds of files its run directory holds:

- ``bundle.json``: the resolved sweep, every cell's config and result, the sha256 of its weights, and the compute
  record of every job that trained it (``pieces.jsonl``); the sha256 of every other file of the bundle;
- ``results.zarr.zip`` and ``tune.zarr.zip``: the run's results and tune stores, byte for byte (a zipped Zarr
  store, which ``xarray.open_zarr`` reads through ``zarr.storage.ZipStore``);
- ``curves.zarr.zip``: every cell's training and validation curves (metrics.jsonl) over (cell, step);
- ``weights.zip``: every cell's ``model.pt``, and the last ``checkpoint.pt`` of each unfinished cell.

``python -m fluidperc.analysis publish RUN_DIR DEST`` writes one; ``load``, ``load_tune`` and the report read a
bundle as they read a run directory; ``python -m fluidperc.analysis restore BUNDLE RUN_DIR`` puts its cells back
into a run directory, where a relaunch finishes only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from fluidperc import __version__
from fluidperc.atomic import swap_in, unique_sibling
from fluidperc.errors import UserError
from fluidperc.provenance import code_commit, sha256_of
from fluidperc.train.outputs import MODEL, PIECES, RESULT, read_pieces

MANIFEST = "bundle.json"
FORMAT = "fluidperc-bundle/1"
STORES = ("results.zarr", "tune.zarr")
CURVES = "curves.zarr"
WEIGHTS = "weights.zip"
CHECKPOINT = "checkpoint.pt"


def is_bundle(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path / MANIFEST} cannot be read as a bundle manifest ({err}); expected the file "
                        "`python -m fluidperc.analysis publish` writes") from None
    if data.get("format") != FORMAT:
        raise UserError(f"{path / MANIFEST} has format {data.get('format')!r}; this fluidperc reads {FORMAT!r}")
    return data


def has_store(path: str | Path, name: str) -> bool:
    """Whether a run directory or a bundle holds the store ``name`` (results.zarr, tune.zarr, curves.zarr)."""
    path = Path(path)
    return (path / name).exists() or (is_bundle(path) and (path / f"{name}.zip").is_file())


def open_store(path: str | Path, name: str) -> xr.Dataset:
    """A run directory's store, or a bundle's zipped copy of it (lazy; ``.load()`` to read it whole)."""
    path = Path(path)
    if (path / name).exists():
        return xr.open_zarr(path / name)
    if is_bundle(path) and (path / f"{name}.zip").is_file():
        import zarr

        with warnings.catch_warnings():  # bundles published before curves were consolidated: small, read as they are
            warnings.filterwarnings("ignore", "Failed to open Zarr store with consolidated metadata", RuntimeWarning)
            return xr.open_zarr(zarr.storage.ZipStore(path / f"{name}.zip", mode="r"))
    raise UserError(f"{path / name} does not exist, and {path} is no bundle holding it")


def cell_configs(path: str | Path) -> list[dict[str, Any]]:
    """Every trained cell's config.json, from a run directory's train/ or a bundle's manifest (label order)."""
    path = Path(path)
    if is_bundle(path):
        cells = manifest(path)["cells"]
        return [cells[label]["config"] for label in sorted(cells)]
    return [json.loads(p.read_text()) for p in sorted((path / "train").glob("*/config.json"))]


def cell_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """Cell label -> its result.json (finished cells), from a run directory's train/ or a bundle's manifest."""
    path = Path(path)
    if is_bundle(path):
        return {label: c["result"] for label, c in manifest(path)["cells"].items() if c["result"] is not None}
    return {p.parent.name: json.loads(p.read_text()) for p in sorted((path / "train").glob(f"*/{RESULT}"))}


def compute_record(path: str | Path) -> dict[str, dict[str, Any]]:
    """Cell label -> {"pieces": its jobs' records, "finished": whether it has a result}."""
    path = Path(path)
    if is_bundle(path):
        return {label: {"pieces": c["pieces"], "finished": c["result"] is not None}
                for label, c in manifest(path)["cells"].items()}
    return {cell.name: {"pieces": read_pieces(cell), "finished": (cell / RESULT).is_file()}
            for cell in sorted(p for p in (path / "train").glob("*") if p.is_dir())}


# --- publishing -----------------------------------------------------------------------------------------------
def _zip_dir(src: Path, dest: Path) -> None:
    """A directory store as a zip of its files, byte for byte (stored: the chunks are compressed already)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(src).as_posix())


def _metrics_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise UserError(f"{path}, line {i}: not JSON; a metrics.jsonl line is one JSON object per step "
                                "(a torn last line: delete it, the cell's checkpoint predates it)") from None
    return rows


def curves_dataset(cells: dict[str, list[dict[str, Any]]]) -> xr.Dataset:
    """Every cell's metrics.jsonl over (cell, step), NaN where a cell logged no value (validation rows, shorter
    cells). Variables are the logged names with '/' as '.' (train_loss/mse -> train_loss.mse); attrs["names"]
    lists [variable, name, integer?] and attrs["keys"] each cell's names in the order its trainer wrote them, so
    that its lines come back byte for byte."""
    labels = sorted(cells)
    steps = sorted({int(r["step"]) for rows in cells.values() for r in rows}) or [0]
    index = {s: i for i, s in enumerate(steps)}
    order: dict[str, bool] = {}  # name -> every value an int, in the order of first appearance
    for label in labels:
        for row in cells[label]:
            for k, v in row.items():
                if k != "step":
                    order[k] = order.get(k, True) and isinstance(v, int) and not isinstance(v, bool)
    data = {n: np.full((len(labels), len(steps)), np.nan) for n in order}
    for c, label in enumerate(labels):
        for row in cells[label]:
            for k, v in row.items():
                if k != "step" and v is not None:
                    data[k][c, index[int(row["step"])]] = float(v)
    variables = {n.replace("/", "."): (("cell", "step"), a) for n, a in data.items()}
    names = [[n.replace("/", "."), n, is_int] for n, is_int in order.items()]
    keys = {label: list(dict.fromkeys(k for row in cells[label] for k in row if k != "step")) for label in labels}
    return xr.Dataset(variables, coords={"cell": labels, "step": steps},
                      attrs={"names": json.dumps(names), "keys": json.dumps(keys)})


def metrics_lines(curves: xr.Dataset, label: str) -> list[str]:
    """A cell's metrics.jsonl back from the curves store (its steps, the values it logged at each)."""
    names = {name: (var, is_int) for var, name, is_int in json.loads(curves.attrs["names"])}
    cell = curves.sel(cell=label)
    values = [(name, names[name][1], cell[names[name][0]].values) for name in json.loads(curves.attrs["keys"])[label]]
    lines = []
    for i, step in enumerate(curves.step.values):
        row = {name: (int(v[i]) if is_int else float(v[i])) for name, is_int, v in values if not math.isnan(v[i])}
        if row:
            lines.append(json.dumps({"step": int(step), **row}))
    return lines


def publish(run_dir: str | Path, dest: str | Path, checkpoints: bool = True) -> Path:
    """Write the bundle of ``run_dir`` to ``dest`` (replaced whole, atomically, when it is a bundle already)."""
    run, dest = Path(run_dir), Path(dest)
    if not run.is_dir():
        raise UserError(f"{run}: no such run directory; expected the directory a launch wrote (runs/NAME)")
    if dest.exists() and not is_bundle(dest):
        raise UserError(f"{dest} exists and is no bundle; publish into a new directory, or move it away first")
    train = run / "train"
    cells: dict[str, Any] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.publish-", dir=dest.parent))
    try:
        with zipfile.ZipFile(tmp / WEIGHTS, "w", zipfile.ZIP_STORED) as weights:
            for cell in sorted(p for p in train.glob("*") if (p / "config.json").is_file()):
                label = cell.name
                result = json.loads((cell / RESULT).read_text()) if (cell / RESULT).is_file() else None
                files = {}
                for name in (MODEL, CHECKPOINT):
                    if (cell / name).is_file() and (name == MODEL and result is not None or
                                                    name == CHECKPOINT and result is None and checkpoints):
                        weights.write(cell / name, f"{label}/{name}")
                        files[name] = sha256_of(cell / name)
                try:
                    pieces = read_pieces(cell)
                except ValueError as err:
                    raise UserError(f"cell {label}: {err}") from None
                cells[label] = {"config": json.loads((cell / "config.json").read_text()), "result": result,
                                "weights": files, "pieces": pieces}
                curves[label] = _metrics_rows(cell / "metrics.jsonl")
        if not cells and not any((run / s).exists() for s in STORES):
            raise UserError(f"{run} holds no trained cell (train/*/config.json) and no results.zarr or tune.zarr; "
                            "nothing to publish")
        for store in STORES:
            if (run / store).exists():
                _zip_dir(run / store, tmp / f"{store}.zip")
        if cells:
            staged = tmp / CURVES
            curves_dataset(curves).to_zarr(staged, mode="w", consolidated=True)  # opened without a fallback warning
            _zip_dir(staged, tmp / f"{CURVES}.zip")
            shutil.rmtree(staged)
        else:
            (tmp / WEIGHTS).unlink()
        sweep = run / "sweep.yaml"
        doc = {"format": FORMAT, "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "fluidperc": __version__, "code": code_commit(), "published_from": str(run),
               "sweep": sweep.read_text() if sweep.is_file() else None,
               "files": {p.name: sha256_of(p) for p in sorted(tmp.iterdir())}, "cells": cells}
        (tmp / MANIFEST).write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
        os.chmod(tmp, 0o755)
        if dest.exists():
            swap_in(tmp, dest)
        else:
            tmp.replace(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# --- restoring ------------------------------------------------------------------------------------------------
def verify(bundle: str | Path) -> list[str]:
    """Files of the bundle whose sha256 differs from its manifest's, and weights that differ from their cell's."""
    bundle = Path(bundle)
    doc = manifest(bundle)
    bad = [f"{name}: sha256 differs" if (bundle / name).is_file() else f"{name}: missing"
           for name, want in doc["files"].items() if not (bundle / name).is_file() or sha256_of(bundle / name) != want]
    if (bundle / WEIGHTS).is_file() and not any(b.startswith(WEIGHTS) for b in bad):
        with zipfile.ZipFile(bundle / WEIGHTS) as zf:
            for label, cell in doc["cells"].items():
                for name, want in cell["weights"].items():
                    if hashlib.sha256(zf.read(f"{label}/{name}")).hexdigest() != want:
                        bad.append(f"{WEIGHTS}: {label}/{name}: sha256 differs")
    return bad


def _write_new(path: Path, data: bytes | str) -> bool:
    """Write ``path`` unless it exists (files already in the run directory win); True when written."""
    if path.exists():
        return False
    tmp = unique_sibling(path)
    tmp.write_bytes(data if isinstance(data, bytes) else data.encode())
    tmp.replace(path)
    return True


def restore(bundle: str | Path, run_dir: str | Path) -> dict[str, int]:
    """The bundle's cells (config, result, model or checkpoint with its sha256, metrics, compute record), its
    sweep and stores back in ``run_dir``, never overwriting a file there; checked against the manifest first."""
    bundle, run = Path(bundle), Path(run_dir)
    bad = verify(bundle)
    if bad:
        raise UserError(f"{bundle} is damaged ({'; '.join(bad)}); nothing was restored. Publish it again from its "
                        "run directory, or check it out again")
    doc = manifest(bundle)
    counts = {"cells": 0, "files": 0}
    (run / "train").mkdir(parents=True, exist_ok=True)
    if doc.get("sweep"):
        counts["files"] += _write_new(run / "sweep.yaml", doc["sweep"])
    for store in STORES:
        if (bundle / f"{store}.zip").is_file() and not (run / store).exists():
            staged = unique_sibling(run / store)
            with zipfile.ZipFile(bundle / f"{store}.zip") as zf:
                zf.extractall(staged)
            staged.replace(run / store)
            counts["files"] += 1
    curves = open_store(bundle, CURVES).load() if has_store(bundle, CURVES) else None
    weights = zipfile.ZipFile(bundle / WEIGHTS) if (bundle / WEIGHTS).is_file() else None
    try:
        for label, cell in doc["cells"].items():
            out = run / "train" / label
            out.mkdir(parents=True, exist_ok=True)
            written = _write_new(out / "config.json", json.dumps(cell["config"], indent=1))
            for name, digest in cell["weights"].items():
                if _write_new(out / name, weights.read(f"{label}/{name}")):
                    _write_new(out / f"{name}.sha256", digest + "\n")
                    written += 1
            if cell["result"] is not None:
                written += _write_new(out / RESULT, json.dumps(cell["result"], indent=1))
            lines = metrics_lines(curves, label) if curves is not None and label in curves.cell.values else []
            if lines:
                written += _write_new(out / "metrics.jsonl", "\n".join(lines) + "\n")
            if cell["pieces"]:
                written += _write_new(out / PIECES, "".join(json.dumps(p) + "\n" for p in cell["pieces"]))
            counts["cells"] += bool(written)
            counts["files"] += written
    finally:
        if weights is not None:
            weights.close()
    return counts
