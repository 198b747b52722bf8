"""The README stays short and its example is a sweep the launcher accepts; the site's pages are all in its nav."""

from __future__ import annotations

import re

import yaml

from conftest import ROOT, run_module


def test_the_readme_stays_under_12_kb():
    assert (ROOT / "README.md").stat().st_size <= 12 * 1024


def test_the_readme_example_is_a_sweep_whose_dry_run_plans_its_cells(tmp_path):
    example = re.search(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    sweep = tmp_path / "example.yaml"
    sweep.write_text(example)
    res = run_module("hpc.launch", str(sweep), "--dry-run", "--out", str(tmp_path / "run"), timeout=120)
    assert res.returncode == 0, res.stderr
    assert "train.sol: 6 cell(s)" in res.stdout and not (tmp_path / "run").exists()


def test_every_docs_page_is_in_the_sites_nav_and_every_nav_entry_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = {next(iter(entry.values())) for entry in config["nav"]}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert nav == pages, f"in the nav only: {sorted(nav - pages)}; pages not in the nav: {sorted(pages - nav)}"
