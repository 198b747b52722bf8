"""hpc.status's table: progress counts in the rows, skipped cells' reasons grouped under the table."""

from __future__ import annotations

from hpc.plan import format_table
from hpc.status import group_progress, skipped_lines

REASON = ("skipped: vgg16-397923af.pth missing; fetch it with `python -m fluidperc.weights fetch vgg16` on a "
          "machine with internet access")


def _record(name: str, skipped: int, reason: str = REASON, outputs: int = 3) -> dict:
    return {"name": name, "stage": "train", "progress": {"unit": "cells trained", "outputs": [f"/nonexistent/{i}"
            for i in range(outputs)]}, "skipped": [{"label": f"{name}-{i}", "reason": reason} for i in range(skipped)]}


def test_a_group_with_skipped_cells_counts_them_in_its_row_and_names_the_reason_below():
    plan = {"train.ae": _record("train.ae", 2), "train.sr": _record("train.sr", 0)}
    assert group_progress(plan["train.ae"]) == "0/3 cells trained; 2 skipped"
    assert group_progress(plan["train.sr"]) == "0/3 cells trained"
    lines = skipped_lines(plan)
    assert lines[0] == "skipped cells, as the launch decided:" and lines[1].startswith("  train.ae: 2 cells: vgg16-")
    assert " ".join(line.strip() for line in lines[1:]) == "train.ae: 2 cells: " + REASON.removeprefix("skipped: ")


def test_the_table_fits_120_columns_however_long_the_reasons_are():
    plan = {f"train.{t}": _record(f"train.{t}", 4, REASON + " (and more words) " * 5) for t in ("ae", "sr", "sol")}
    table = format_table(["stage", "group", "jobs by state", "progress"],
                         [["train", name, "COMPLETED 3", group_progress(r)] for name, r in plan.items()])
    assert max(map(len, table.splitlines())) <= 120, table
    lines = skipped_lines(plan)
    assert max(map(len, lines)) <= 120, lines
    assert sum(line.startswith("  train.") for line in lines) == 3, "one entry per group and reason"
    assert all(line.startswith(("skipped", "  train.", "    ")) for line in lines), "a long reason goes on indented"
