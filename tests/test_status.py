"""hpc.status's table: progress counts in the rows, skipped cells' reasons grouped under the table."""

from __future__ import annotations

from hpc.plan import format_table
import json

from hpc.status import compute_lines, group_progress, skipped_lines

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


def test_status_sums_the_compute_record_each_cells_trainer_kept(tmp_path):
    cells = [tmp_path / "train" / f"ae-karman_32x16-mse-s{i}" for i in range(3)]
    for i, cell in enumerate(cells[:2]):
        cell.mkdir(parents=True)
        (cell / "pieces.jsonl").write_text("".join(json.dumps({"start": a, "to": b, "seconds": 90.0, "ended": "t"}) + "\n"
                                                   for a, b in ((0, 10), (10, 20))[: i + 1]))
    plan = {"train.ae": {"name": "train.ae", "stage": "train",
                         "progress": {"outputs": [str(c / "result.json") for c in cells]}}}
    assert compute_lines(plan) == ["compute, as each cell's trainer recorded it:",
                                   "  train.ae: 3 job(s) on 2 cell(s), 4.5 job-minutes"]
    (cells[0] / "pieces.jsonl").write_text("{torn")
    assert "the compute record cannot be read" in compute_lines(plan)[1]
