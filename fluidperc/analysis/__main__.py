"""python -m fluidperc.analysis RUN_DIR: write RUN_DIR/report/ from RUN_DIR/results.zarr and/or tune.zarr; and the
verbs that publish a run as a bundle, restore one into a run directory, and sum up what its training cost."""

from __future__ import annotations

import argparse
import sys

from fluidperc.errors import UserError, run_cli

VERBS = ("publish", "restore", "compute")


def report(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fluidperc.analysis",
        description="Write RUN_DIR/report/report.md (tables: mean ± std over seeds per loss and metric, best marked, "
        "ratios to MSE with paired intervals, SOL improvement over the source sim) and PNG figures from "
        "RUN_DIR/results.zarr, and the tuning section from RUN_DIR/tune.zarr, whichever the run holds. RUN_DIR may "
        "be a published bundle. Other verbs: python -m fluidperc.analysis publish|restore|compute --help.",
    )
    p.add_argument("run_dir", help="a run directory, or a bundle (python -m fluidperc.analysis publish)")
    p.add_argument("--out", help="write the report and its figures here instead of RUN_DIR/report (e.g. a docs "
                   "folder to publish)")
    p.add_argument("--no-animations", action="store_true", help="leave the GIFs out (up to 1 MB each)")
    args = p.parse_args(argv)
    from fluidperc.analysis.report import main_table, write_report  # torch after argparse: --help stays quick

    path = write_report(args.run_dir, args.out, animations=not args.no_animations)
    print(f"report: {path}")
    table = main_table(args.run_dir)
    if table:
        print(table)
    return 0


def publish(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m fluidperc.analysis publish", description="Write a run as a "
                                "bundle: bundle.json (the resolved sweep, every cell's config, result, weight "
                                "checksums and compute record), results.zarr.zip, tune.zarr.zip, curves.zarr.zip and "
                                "weights.zip (every cell's model.pt, and unfinished cells' last checkpoint).")
    p.add_argument("run_dir", help="the run directory a launch wrote")
    p.add_argument("dest", help="the bundle's directory (a bundle there is replaced whole)")
    p.add_argument("--no-checkpoints", action="store_true", help="leave unfinished cells' checkpoints out (a bundle "
                   "to read, not to continue)")
    p.add_argument("--dry-run", action="store_true", help="say what would be published; write nothing")
    args = p.parse_args(argv)
    from fluidperc.analysis.bundle import compute_record, publish as write

    if args.dry_run:
        record = compute_record(args.run_dir)
        done = sum(c["finished"] for c in record.values())
        print(f"{args.run_dir} -> {args.dest}: {len(record)} cell(s), {done} finished, "
              f"{len(record) - done} unfinished ({'without' if args.no_checkpoints else 'with'} their checkpoints)")
        return 0
    dest = write(args.run_dir, args.dest, checkpoints=not args.no_checkpoints)
    print(f"bundle: {dest} ({', '.join(sorted(p.name for p in dest.iterdir()))})")
    return 0


def restore(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m fluidperc.analysis restore", description="Put a bundle's cells "
                                "(configs, results, weights or checkpoints with their sha256, metrics, compute "
                                "records), its sweep and stores back into a run directory, checked against the "
                                "manifest first; files already there win. A relaunch then finishes only the "
                                "missing work.")
    p.add_argument("bundle")
    p.add_argument("run_dir")
    args = p.parse_args(argv)
    from fluidperc.analysis.bundle import restore as put_back

    counts = put_back(args.bundle, args.run_dir)
    print(f"restored {counts['cells']} cell(s), {counts['files']} file(s) from {args.bundle} into {args.run_dir}")
    return 0


def compute(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m fluidperc.analysis compute", description="What each cell's "
                                "training cost, from the compute record of every job that trained it: one row per "
                                "task, grid and loss (its cells, median and total job-minutes).")
    p.add_argument("run_dir", help="a run directory or a bundle")
    p.add_argument("--prefix", default="", help="only cells whose label starts with this, e.g. sr-")
    p.add_argument("--steps", type=int, help="the steps a complete record must reach (default: the most any of "
                   "the cell's jobs reached)")
    args = p.parse_args(argv)
    from fluidperc.analysis.compute import compute_text

    try:
        print(compute_text(args.run_dir, args.prefix, args.steps))
    except ValueError as err:
        raise UserError(str(err)) from None
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = argv[0] if argv and argv[0] in VERBS else None
    return {"publish": publish, "restore": restore, "compute": compute}.get(verb, report)(argv[1:] if verb else argv)


if __name__ == "__main__":
    run_cli(main, "fluidperc.analysis")
