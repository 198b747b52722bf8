"""Readers for imported datasets, as a registry: each turns a path into an xarray Dataset (lazy where the format
allows) whose variables the importer maps onto the stores' layout. Built in: ``xarray`` (a Zarr store, or a
NetCDF file through whichever engine xarray has) and ``npz`` (a folder of .npz frames). Installed packages add
readers through the entry point group ``fluidperc.sources``; a sweep's plugin modules call
:func:`register_source`. Like xarray's backend entry points: the name is the contract, the reader is a function,
and each reader may say whether it can open a path (``can_open``, xarray's ``guess_can_open``), so that an import
without ``source:`` finds its reader through the table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from fluidperc.errors import UserError
from fluidperc.registry import Registry, resolve

if TYPE_CHECKING:
    import xarray as xr

ENTRY_POINT_GROUP = "fluidperc.sources"


@dataclass(frozen=True)
class SourceEntry:
    """``reader``: ``"module:function"``, called with the path; it returns an ``xarray.Dataset``. ``can_open``:
    ``"module:function"`` of a cheap check ``(path) -> bool`` (names and magic bytes, never a full read), or None
    for a reader that is only used when an import names it."""

    name: str
    reader: str
    description: str = ""
    can_open: str | None = None

    def open(self, path: Path) -> "xr.Dataset":
        fn: Callable[[Path], "xr.Dataset"] = resolve(self.reader)
        return fn(path)

    def claims(self, path: Path) -> bool:
        return self.can_open is not None and bool(resolve(self.can_open)(path))


def _builtin() -> None:
    register_source(SourceEntry("xarray", "fluidperc.datasets.sources:open_xarray",
                                "a Zarr store or a NetCDF file, opened lazily by xarray",
                                can_open="fluidperc.datasets.sources:can_open_xarray"))
    register_source(SourceEntry("npz", "fluidperc.datasets.sources:open_npz_folder",
                                "a folder of .npz frames: one subfolder per sim, one file per frame (name order)",
                                can_open="fluidperc.datasets.sources:can_open_npz_folder"))


SOURCES: Registry[SourceEntry] = Registry("dataset source", ENTRY_POINT_GROUP, key=lambda e: e.name,
                                         describe=lambda e: e.reader, builtin=_builtin)
register_source = SOURCES.register
sources = SOURCES.table
source_entry = SOURCES.entry
check_source = SOURCES.check


def default_source(path: Path) -> str:
    """The reader for an import that names none: the last registered reader that claims the path (plugins before
    the built-in ones), else ``xarray``, whose error then says what it could not open."""
    for entry in reversed(list(sources().values())):
        if entry.claims(Path(path)):
            return entry.name
    return "xarray"


NETCDF_MAGIC = (b"CDF\x01", b"CDF\x02", b"\x89HDF\r\n\x1a\n")


def can_open_xarray(path: Path) -> bool:
    """A Zarr store (v2 or v3 metadata, or a .zarr name) or a NetCDF 3/4 file (its magic bytes)."""
    if path.is_dir():
        return path.suffix == ".zarr" or any((path / m).exists() for m in ("zarr.json", ".zgroup", ".zarray"))
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return head.startswith(NETCDF_MAGIC)


def can_open_npz_folder(path: Path) -> bool:
    """A folder holding .npz files, directly or one level down."""
    return path.is_dir() and (any(path.glob("*.npz")) or any(path.glob("*/*.npz")))


def open_xarray(path: Path) -> "xr.Dataset":
    import xarray as xr

    if path.is_dir():
        return xr.open_zarr(path, consolidated=None)
    return xr.open_dataset(path)


def open_npz_folder(path: Path) -> "xr.Dataset":
    """Subfolders (name order) are sims and their .npz files (name order) frames; without subfolders, every .npz
    file is one sim whose arrays are [frame, y, x]. Each file holds the same array names. Loaded into memory."""
    import numpy as np
    import xarray as xr

    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and any(p.glob("*.npz")))
    sims: list[dict[str, np.ndarray]] = []
    for sim in subdirs or sorted(path.glob("*.npz")):
        files = sorted(sim.glob("*.npz")) if subdirs else [sim]
        frames = []
        for f in files:
            with np.load(f, allow_pickle=False) as z:
                frames.append({k: z[k] for k in z.files})
        names = set(frames[0])
        for f, fr in zip(files, frames):
            if set(fr) != names:
                raise UserError(f"{f}: holds arrays {sorted(fr)}, but {files[0]} holds {sorted(names)}; every .npz "
                                "of an imported folder must hold the same arrays")
        if subdirs:
            sims.append({k: np.stack([fr[k] for fr in frames]) for k in names})
        else:
            sims.append(frames[0])
    if not sims:
        raise UserError(f"{path}: no .npz files in it or in its subfolders")
    names = set(sims[0])
    out = {}
    for k in sorted(names):
        shapes = {a[k].shape for a in sims if k in a}
        if len(shapes) != 1 or any(k not in a for a in sims):
            raise UserError(f"{path}: array '{k}' is missing from some sims or differs in shape between them "
                            f"({sorted(shapes)}); every sim needs the same frames and grid")
        stacked = np.stack([a[k] for a in sims])
        if stacked.ndim != 4:
            raise UserError(f"{path}: array '{k}' is {stacked.ndim - 1}-D per sim (shape {stacked.shape[1:]}); "
                            "expected [frame, y, x] (a file per frame holds [y, x])")
        out[k] = (("sim", "frame", "y", "x"), stacked)
    return xr.Dataset(out)
