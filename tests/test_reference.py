"""The sweep reference is generated from the models the launcher validates with, and no key goes undescribed."""

from __future__ import annotations

from conftest import run_module
from fluidperc.losses import losses
from hpc.reference import markdown, sections


def _models():
    return [m for m, _ in sections()] + [m for e in losses().values() for m, _ in sections(e.spec)]


def test_every_sweep_key_and_loss_option_has_a_description():
    blank = [f"{m.__name__}.{name}" for m in _models() for name, f in m.model_fields.items() if not f.description]
    assert not blank, f"describe these fields (Field(description=...)); the reference shows their text: {blank}"


def test_the_reference_has_a_row_for_every_field_of_every_model_a_sweep_can_hold():
    text = markdown()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == sum(len(m.model_fields) for m in _models())
    for model, keys in sections():
        assert f"### {model.__name__} {{#{model.__name__.lower()}}}" in text
    assert "Under `train.settings`, `tune.settings`." in text, "a model says every key it sits under"
    assert "| `steps` | int | `1000` | optimiser steps per cell (>= 1) |" in text


def test_python_m_hpc_reference_prints_it():
    res = run_module("hpc.reference")
    assert res.returncode == 0 and res.stdout == markdown(), res.stderr
