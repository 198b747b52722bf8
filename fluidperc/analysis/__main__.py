"""python -m fluidperc.analysis RUN_DIR: write RUN_DIR/report/ from RUN_DIR/results.zarr and/or tune.zarr."""

from __future__ import annotations

import argparse

from fluidperc.errors import run_cli


def main() -> int:
    p = argparse.ArgumentParser(
        prog="python -m fluidperc.analysis",
        description="Write RUN_DIR/report/report.md (tables: mean ± std over seeds per loss and metric, best marked, "
        "ratios to MSE with paired intervals, SOL improvement over the source sim) and PNG figures from "
        "RUN_DIR/results.zarr, and the tuning section from RUN_DIR/tune.zarr, whichever the run holds.",
    )
    p.add_argument("run_dir")
    p.add_argument("--out", help="write the report and its figures here instead of RUN_DIR/report (e.g. a docs "
                   "folder to publish)")
    p.add_argument("--no-animations", action="store_true", help="leave the GIFs out (up to 1 MB each)")
    args = p.parse_args()
    from fluidperc.analysis.report import main_table, write_report  # torch after argparse: --help stays quick

    path = write_report(args.run_dir, args.out, animations=not args.no_animations)
    print(f"report: {path}")
    table = main_table(args.run_dir)
    if table:
        print(table)
    return 0


if __name__ == "__main__":
    run_cli(main, "fluidperc.analysis")
