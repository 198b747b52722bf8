"""Every sweep file in sweeps/ validates and plans (--dry-run) without creating anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT

SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("sweep", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_sweep_file_dry_runs(sweep: Path, tmp_path, launch_cli):
    res = launch_cli(str(sweep), "--dry-run", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "dry run: nothing is submitted" in res.stdout and "submission(s)" in res.stdout
    assert list(tmp_path.iterdir()) == [], "a dry run must not create anything"
