"""How long ``--dry-run`` and ``hpc.status`` take, against a bare Python start in the same run.

A dry run is what a user types on a login node before every launch; it should answer in a fraction of a second.
Each command runs in a fresh interpreter from an empty directory (as on a fresh login node, no stores yet),
interleaved with the baseline, and the table shows medians. The slowest imports of one dry run come from
``python -X importtime``.

    python -m benchmarks.bench_dry_run [--repeats 9] [--sweep sweeps/sol_all_losses.yaml]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, write

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def slowest_imports(cmd: list[str], cwd: Path, env: dict[str, str], n: int = 8) -> list[tuple[str, float]]:
    """Top-level imports by cumulative time (ms), from ``-X importtime``."""
    res = subprocess.run([sys.executable, "-X", "importtime", *cmd[1:]], cwd=cwd, env=env, capture_output=True, text=True)
    rows = []
    for line in res.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if not name.startswith(" ") or name.startswith("  "):
            continue  # nested imports are inside their parents' cumulative time
        try:
            rows.append((name.strip(), int(cumulative) / 1000))
        except ValueError:
            continue
    return sorted(rows, key=lambda r: -r[1])[:n]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--sweep", default="sweeps/sol_all_losses.yaml")
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    sweep = str(ROOT / args.sweep)
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        status_sweep = cwd / "check.yaml"
        status_sweep.write_text("name: x\ncheck: {tasks: 1}\n")
        subprocess.run([sys.executable, "-m", "hpc.launch", str(status_sweep), "--backend", "local", "--out", "run"],
                       cwd=cwd, env=env, check=True, capture_output=True)
        commands = {
            "python -c pass (baseline)": [sys.executable, "-c", "pass"],
            f"hpc.launch {args.sweep} --dry-run": [sys.executable, "-m", "hpc.launch", sweep, "--dry-run"],
            "hpc.status RUN (a finished local run)": [sys.executable, "-m", "hpc.status", "run"],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(args.repeats):
            for name, cmd in commands.items():  # interleaved: load changes hit every row alike
                times[name].append(timed(cmd, cwd, env))
        imports = slowest_imports(commands[f"hpc.launch {args.sweep} --dry-run"], cwd, env)
    base = statistics.median(times["python -c pass (baseline)"])
    rows = [{"command": k, "median_s": statistics.median(v), "vs_baseline": statistics.median(v) / base,
             "times_s": v} for k, v in times.items()]
    print(f"{'command':<58} {'median s':>9} {'vs python':>10}")
    for r in rows:
        print(f"{r['command']:<58} {r['median_s']:>9.3f} {r['vs_baseline']:>9.1f}x")
    print("\nslowest top-level imports of one dry run (cumulative ms):")
    for name, ms in imports:
        print(f"  {name:<40} {ms:>7.1f}")
    path = write("bench_dry_run", {"machine": machine(), "repeats": args.repeats, "rows": rows,
                                   "slowest_imports_ms": imports})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
