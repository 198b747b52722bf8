"""Shared fixtures: the real local Slurm cluster (skipped with the reason when absent), CLI runners, ../shared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
LSIM_WEIGHTS = SHARED / "weights" / "LSiM.pth"


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The local cluster that `make test` brings up; skips with the reason when it does not answer."""
    from hpc.backends import slurm_reachable

    ok, why = slurm_reachable()
    if not ok:
        pytest.skip(f"no Slurm cluster ({why}); `make test` brings one up as root on Debian/Ubuntu")
    return os.environ.get("SLURM_CONF", "")


def run_module(module: str, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m module args` as a user would, capturing output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture
def launch_cli():
    return lambda *args, **kw: run_module("hpc.launch", *args, **kw)


@pytest.fixture
def status_cli():
    return lambda *args, **kw: run_module("hpc.status", *args, **kw)


@pytest.fixture
def lsim_weights() -> Path:
    if not LSIM_WEIGHTS.is_file():
        pytest.skip(f"the LSiM weights are not at {LSIM_WEIGHTS} (../shared/weights/LSiM.pth beside the checkout)")
    return LSIM_WEIGHTS
