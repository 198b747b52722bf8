"""python -m fluidperc.datasets verify PATH: per store, complete and incomplete sims, missing or misshapen
arrays, and non-finite values in sims marked complete. Exit status 1 when any store has a problem."""

from __future__ import annotations

import argparse
from pathlib import Path

from fluidperc.datasets.verify import find_stores, inspect_store
from fluidperc.errors import UserError, run_cli


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fluidperc.datasets",
                                description="Check dataset stores made by the datagen stage.")
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="report per store: complete/incomplete sims, missing arrays, non-finite values")
    v.add_argument("paths", nargs="+", type=Path, help="a store (*.zarr) or a data directory holding stores")
    v.add_argument("--metadata-only", action="store_true", help="skip reading the frames (no non-finite check)")
    args = p.parse_args(argv)

    bad = 0
    for path in args.paths:
        if not path.exists():
            raise UserError(f"{path}: no such store or data directory")
        stores = find_stores(path)
        if not stores:
            raise UserError(f"{path}: no *.zarr stores in it")
        for store in stores:
            report = inspect_store(store, scan=not args.metadata_only)
            print(report.summary())
            bad += not report.ok
    if bad:
        print(f"{bad} store(s) with problems. A store with no complete sim is rebuilt by relaunching its sweep; "
              "otherwise move it away (its complete sims are kept where they are) or delete it, and relaunch.")
    return 1 if bad else 0


if __name__ == "__main__":
    run_cli(main, "python -m fluidperc.datasets")
