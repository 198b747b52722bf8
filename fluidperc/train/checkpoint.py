"""Checkpoints written atomically with a sha256 beside them, so that a torn or corrupt file is detected and named
instead of being half-loaded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fluidperc.errors import UserError
from fluidperc.provenance import sha256_of


def save(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    digest = sha256_of(tmp)
    sha_tmp = tmp.with_suffix(".sha256")
    sha_tmp.write_text(digest + "\n")
    # Order matters: a reader that sees the new checkpoint also sees its digest (or fails the check loudly).
    sha_tmp.replace(path.with_name(path.name + ".sha256"))
    tmp.replace(path)


def load(path: Path) -> dict[str, Any] | None:
    """The checkpoint, None when absent; a UserError naming the file when it is corrupt."""
    if not path.exists():
        return None
    sha = path.with_name(path.name + ".sha256")
    if not sha.exists():
        raise UserError(f"checkpoint {path} has no {sha.name}; it may be torn. Delete it to start over.")
    want, got = sha.read_text().strip(), sha256_of(path)
    if want != got:
        raise UserError(f"checkpoint {path} is corrupt (sha256 {got}, expected {want}); delete it to restart the cell")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"checkpoint {path} could not be loaded ({err}); delete it to restart the cell") from None
