"""Command-line overrides of sweep keys, as Hydra users write them: ``train.settings.steps=200``.

The key is a dotted path into the sweep file (list items by index: ``datagen.datasets.0.steps=100``); the value
is YAML (``lr=3e-4`` is a float, ``losses=[mse, lsim]`` a list, ``partition=gpu-a100`` a string). Overrides are
applied to the loaded file before validation, so they are checked like the file itself, and an error about an
overridden key names the override.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hpc.errors import UserError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z0-9_]+))*$")
MAX_VALUE_CHARS = 10_000


@dataclass(frozen=True)
class Override:
    text: str  # as the user typed it
    path: tuple[str | int, ...]
    value: Any

    @property
    def key(self) -> str:
        return ".".join(str(p) for p in self.path)


def parse(text: str, sweep_path: Path) -> Override:
    if "=" not in text:
        raise UserError(f"{sweep_path}: command-line override '{text}' is not KEY=VALUE (for example "
                        "train.settings.steps=200). Nothing was submitted.")
    key, raw = text.split("=", 1)
    if not _KEY.match(key):
        raise UserError(f"{sweep_path}: command-line override '{text}': '{key}' is not a dotted key such as "
                        "train.settings.lr or datagen.datasets.0.steps. Nothing was submitted.")
    if len(raw) > MAX_VALUE_CHARS:
        raise UserError(f"{sweep_path}: command-line override '{key}=...' has a value of {len(raw)} characters "
                        f"(at most {MAX_VALUE_CHARS}). Nothing was submitted.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{sweep_path}: command-line override '{text}': its value is not valid YAML ({problem}). "
                        "Nothing was submitted.") from None
    path = tuple(int(p) if p.isdigit() else p for p in key.split("."))
    return Override(text, path, value)


def apply(data: dict, overrides: list[Override], sweep_path: Path) -> dict:
    """A copy of the loaded sweep with every override set (intermediate mappings are created)."""
    import copy

    data = copy.deepcopy(data)
    for ov in overrides:
        node: Any = data
        for i, part in enumerate(ov.path[:-1]):
            here = ".".join(str(p) for p in ov.path[: i + 1])
            if isinstance(node, list):
                if not isinstance(part, int) or not 0 <= part < len(node):
                    raise UserError(f"{sweep_path}: command-line override '{ov.text}': '{here}' is not an index of "
                                    f"the list there ({len(node)} items). Nothing was submitted.")
                node = node[part]
            elif isinstance(node, dict):
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
            else:
                raise UserError(f"{sweep_path}: command-line override '{ov.text}': '{here}' holds a single value, "
                                "not keys. Nothing was submitted.")
        last = ov.path[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or not 0 <= last < len(node):
                raise UserError(f"{sweep_path}: command-line override '{ov.text}': {last} is not an index of the "
                                f"list at '{'.'.join(str(p) for p in ov.path[:-1])}' ({len(node)} items). Nothing "
                                "was submitted.")
            node[last] = ov.value
        elif isinstance(node, dict):
            node[last] = ov.value
        else:
            parent = ".".join(str(p) for p in ov.path[:-1])
            raise UserError(f"{sweep_path}: command-line override '{ov.text}': '{parent}' holds a single value, "
                            "not keys. Nothing was submitted.")
    return data


def blame(message: str, overrides: list[Override]) -> str:
    """Name the overrides whose keys an error message mentions."""
    quoted = re.findall(r"key '([^']+)'", message)
    hits = [ov.text for ov in overrides
            if any(ov.key == k or ov.key.startswith(k + ".") or k.startswith(ov.key + ".") for k in quoted)]
    if not hits:
        return message
    tail = " Nothing was submitted."
    head = message.removesuffix(tail).rstrip(".")
    return f"{head} (set on the command line: {', '.join(hits)}).{tail if message.endswith(tail) else ''}"
