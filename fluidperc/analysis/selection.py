"""Selection on validation: among the cells of a search (train.grid points, a sum's weight grid), the setting each
task, grid and loss family trains with, chosen by the validation metric alone (never a test sim).

A search is a train stage like any other; its cells keep their best validation (keep: best) or their last, and
``result.json`` records its value (``selected_value``, or the last validation's ``select_on``). A candidate is one
(loss, grid point); its score is the mean over seeds. ``train.settings_from: SEARCH_RUN`` in a later sweep trains
each task, grid and loss family with the winner (hpc.stages.train).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluidperc.analysis.bundle import cell_configs, cell_results
from fluidperc.analysis.tables import markdown_table
from fluidperc.datasets.names import grid_name
from fluidperc.tasks.cell import CellConfig


@dataclass
class Candidate:
    """One (loss, grid point) of a family on a task and grid, over its seeds."""

    task: str
    grid: str
    family: str
    loss: str
    variant: str
    loss_spec: Any
    settings: dict[str, Any]
    select_on: str
    source: str = ""  # the search (run directory or bundle) that trained it
    protocol: dict[str, Any] = field(default_factory=dict)  # its settings apart from the grid's keys
    scores: list[float] = field(default_factory=list)
    shares: list[dict[str, float]] = field(default_factory=list)  # each seed's final share of a sum's terms

    @property
    def score(self) -> float:
        finite = [s for s in self.scores if math.isfinite(s)]
        return statistics.fmean(finite) if finite else math.inf

    @property
    def name(self) -> str:
        return f"{self.loss} {self.variant}".strip()


def _score(result: dict[str, Any], select_on: str) -> float:
    value = result.get("selected_value", result.get(select_on))
    return float(value) if value is not None else math.nan


def _shares(result: dict[str, Any]) -> dict[str, float]:
    """Each term's share of the final training loss (a sum's; empty otherwise)."""
    total = result.get("train_loss")
    terms = {k.split("/", 1)[1]: v for k, v in result.items() if k.startswith("train_loss/")}
    if not terms or not total:
        return {}
    return {k: v / total for k, v in terms.items()}


def candidates(run: str | Path) -> dict[tuple[str, str, str], list[Candidate]]:
    """(task, grid, family) -> its candidates, from a run directory or a bundle's finished cells."""
    results = cell_results(run)
    out: dict[tuple[str, str, str], dict[str, Candidate]] = {}
    for cfg in cell_configs(run):
        cell = CellConfig.model_validate(cfg)
        result = results.get(cell.label)
        if result is None:
            continue
        grid = grid_name(cell.scene, cell.resolution)
        family = cell.loss_family or cell.loss_spec.label
        keys = [part.split("=", 1)[0] for part in cell.variant.split(",") if "=" in part]
        group = out.setdefault((cell.task, grid, family), {})
        c = group.get(cell.loss_row)
        if c is None:
            settings = cell.settings.model_dump(mode="json")
            c = group[cell.loss_row] = Candidate(cell.task, grid, family, cell.loss_spec.label, cell.variant,
                                                 cell.loss, {k: getattr(cell.settings, k) for k in keys},
                                                 cell.settings.select_on, str(run),
                                                 {k: v for k, v in settings.items() if k not in keys})
        c.scores.append(_score(result, c.select_on))
        c.shares.append(_shares(result))
    return {key: list(group.values()) for key, group in out.items()}


def chosen(group: list[Candidate]) -> Candidate:
    """The candidate with the lowest mean validation score (ties: the first listed)."""
    return min(group, key=lambda c: c.score)


def describe(best: Candidate, group: list[Candidate], run: str | Path) -> str:
    """Where a setting came from, for the report's settings table: the winner, what it was chosen from, how."""
    others = sorted({c.source for c in group} - {best.source or str(run)})
    pooled = f", pooled with {', '.join(others)}" if others else ""
    return (f"search {best.source or run}: {best.name} of {len(group)} ({', '.join(c.name for c in group)}{pooled}), "
            f"best mean {best.select_on} {best.score:.4g} on validation over {len(best.scores)} seed(s)")


def pool(searches: list[dict[tuple[str, str, str], list[Candidate]]]) -> dict[tuple[str, str, str], list[Candidate]]:
    """Several searches' candidates as one search's: a grid widened by a second search (the AE's lr above the
    first grid's top) is chosen among as if one search had tried it all. Refused, with the reason, when a
    candidate is in two searches or two searches trained a family with other settings than their grids'."""
    out: dict[tuple[str, str, str], list[Candidate]] = {}
    for search in searches:
        for key, group in search.items():
            have = out.setdefault(key, [])
            for c in group:
                twin = next((h for h in have if h.name == c.name), None)
                if twin is not None:
                    raise ValueError(f"{c.task} {c.name} on {c.grid} is a candidate of both {twin.source} and "
                                     f"{c.source}; list each candidate in one search only")
                other = next((h for h in have if h.source != c.source), None)  # within one search: its own affair
                if other is not None and c.protocol != other.protocol:
                    keys = sorted(k for k in set(c.protocol) | set(other.protocol)
                                  if c.protocol.get(k) != other.protocol.get(k))
                    shown = ", ".join(f"{k}: {other.protocol.get(k)!r} in {other.source}, {c.protocol.get(k)!r} "
                                      f"in {c.source}" for k in keys[:3])
                    raise ValueError(f"the searches trained {c.task} {c.family} on {c.grid} with other settings "
                                     f"than their grids' ({shown}); pooled candidates must differ only in the "
                                     "grid's keys")
                have.append(c)
    return out


def selection_lines(run: str | Path) -> list[str]:
    """The report's selection table: every family with more than one candidate, each candidate's validation
    score (mean ± sample SD over seeds), the chosen one in bold, and a sum's final share of each term."""
    lines = []
    for (task, grid, family), group in candidates(run).items():
        if len(group) < 2:
            continue
        best = chosen(group)
        terms = sorted({t for c in group for s in c.shares for t in s})
        rows = []
        for c in group:
            finite = [s for s in c.scores if math.isfinite(s)]
            sd = f" ± {statistics.stdev(finite):.2g}" if len(finite) > 1 else ""
            score = f"{c.score:.4g}{sd}" if finite else "-"
            shares = [f"{statistics.fmean([s[t] for s in c.shares if t in s]):.0%}"
                      if any(t in s for s in c.shares) else "-" for t in terms]
            name = f"**{c.name}**" if c is best else c.name
            rows.append([name, str(len(finite)), score, *shares])
        headers = ["candidate", "n", f"{group[0].select_on} (validation)", *(f"share of {t}" for t in terms)]
        lines += [f"### {task} on {grid}: {family}", "", markdown_table(headers, rows), ""]
    if not lines:
        return []
    return ["## Selection on validation", "",
            "Each candidate's validation score at the weights it kept (keep: best, or its last validation), mean ± "
            "sample SD over n seeds; the lowest is chosen (bold). Shares: each term's part of a sum's final training "
            "loss, mean over seeds. Test sims play no part in it.", "", *lines]
