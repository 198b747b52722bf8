"""One table of named plugins, shared by losses, scenes, tasks and dataset sources, so that each registers, lists,
looks up and loads its installed plugins the same way (torchvision's ``register_model``/``get_model`` is the
model; xarray's backend entry points the plugin mechanism).

The built-in entries are added on first use, before any plugin, so that listings start with them. Installed
packages add entries through an entry point group, loaded once on first use of the table; a plugin that fails to
load names itself instead of failing somewhere later.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Generic, TypeVar

from fluidperc.errors import UserError

E = TypeVar("E")


def resolve(ref: str) -> Any:
    """``"package.module:attr"`` (``attr`` may be dotted: ``Class.method``) -> the object, imported now."""
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


class Registry(Mapping[str, E], Generic[E]):
    """``kind``: the word errors use ("loss"). ``key``: an entry's name. ``describe``: what tells two entries
    apart in the "registered twice" error (their implementation). ``builtin``: registers the built-in entries, or
    names that function as ``"module:attr"`` when its module needs the table itself (losses: a sum's spec parses
    its terms through it). ``entry_point_group`` None: installed packages add no entries (stages). Read as a
    mapping, it is the table: ``name in LOSSES``, ``LOSSES[name]``, ``list(LOSSES)``."""

    def __init__(self, kind: str, entry_point_group: str | None, key: Callable[[E], str],
                 describe: Callable[[E], str], builtin: Callable[[], None] | str) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._key = key
        self._describe = describe
        self._builtin = builtin
        self._entries: dict[str, E] = {}
        self._builtin_loaded = False
        self._plugins_loaded = False

    def _ensure_builtin(self) -> None:
        if not self._builtin_loaded:
            self._builtin_loaded = True  # before the call: the built-ins register through register()
            (resolve(self._builtin) if isinstance(self._builtin, str) else self._builtin)()

    def register(self, entry: E) -> E:
        """Add an entry (a second registration of the same name must be the same entry)."""
        self._ensure_builtin()
        name = self._key(entry)
        known = self._entries.get(name)
        if known is not None and known != entry:
            raise UserError(f"{self.kind} '{name}' is registered twice ({self._describe(known)}, "
                            f"{self._describe(entry)}); rename one")
        self._entries[name] = entry
        return entry

    def table(self) -> dict[str, E]:
        """Every entry: the built-in ones, installed plugins' and those of imported plugin modules."""
        self._ensure_builtin()
        if not self._plugins_loaded and self.entry_point_group is not None:
            self._plugins_loaded = True
            from importlib.metadata import entry_points

            for ep in entry_points(group=self.entry_point_group):
                try:
                    ep.load()  # the module registers its entries when it is imported
                except Exception as err:
                    raise UserError(f"the installed plugin '{ep.name}' ({ep.value}, entry point group "
                                    f"{self.entry_point_group}) fails to load: {type(err).__name__}: {err}") from None
        return self._entries

    def entry(self, name: str, where: str = "") -> E:
        table = self.table()
        if name not in table:
            prefix = f"{where}: " if where else ""
            raise UserError(f"{prefix}unknown {self.kind} '{name}'; expected one of {', '.join(table)}")
        return table[name]

    def check(self, name: str) -> str:
        """A pydantic validator's body: the name, or a ValueError listing the registered entries."""
        try:
            self.entry(name)
        except UserError as err:
            raise ValueError(str(err)) from None
        return name

    def __getitem__(self, name: str) -> E:
        return self.table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.table())

    def __len__(self) -> int:
        return len(self.table())
