"""python -m fluidperc.train CELL.json OUT_DIR: train one cell here (under torchrun for N processes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fluidperc.errors import run_cli


def main() -> int:
    p = argparse.ArgumentParser(
        prog="python -m fluidperc.train",
        description="Train one cell (task x loss x resolution x seed) into OUT_DIR, resuming from its checkpoint. "
        "Run it under torchrun --nproc_per_node=N for N data-parallel processes (gloo on CPU, NCCL on GPUs).",
    )
    p.add_argument("cell", help="a JSON file holding the cell config (RUN_DIR/train/<cell>/config.json works)")
    p.add_argument("out_dir")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    from fluidperc.train import run  # torch after argparse: --help stays quick

    result = run(Path(args.cell).read_text(), args.out_dir, progress=not args.no_progress)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    run_cli(main, "fluidperc.train")
