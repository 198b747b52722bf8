"""Pretrained weights: one catalog, one resolver, and ``python -m fluidperc.weights list|fetch|verify``.

Compute nodes are often offline, so nothing downloads at training time: a user runs ``fetch`` on a login node
and every loss resolves its file through :class:`WeightStore`, which checks the sha256 before torch loads it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fluidperc.errors import UserError, run_cli
from fluidperc.provenance import sha256_of
from fluidperc.registry import Registry

FETCH_COMMAND = "python -m fluidperc.weights fetch"


@dataclass(frozen=True)
class WeightFile:
    """A file we can verify. ``sha256`` is the full digest, or for torchvision's trunks the 8-hex prefix that
    their file names carry (the same check torch.hub applies)."""

    name: str
    filename: str
    url: str
    sha256: str
    licence: str
    used_by: str


def _builtin() -> None:
    for w in (
        WeightFile(
            "lsim",
            "LSiM.pth",
            "https://github.com/tum-pbs/LSIM/raw/a89a1d4/Models/LSiM.pth",
            "6f9d3934e9a14222c25bcd58cb81e79e8c1e2bde5e2968ab04612d9b08057634",
            "MIT (Kohl, Um, Thuerey 2020)",
            "loss lsim; LSiM metric",
        ),
        WeightFile(
            "vgg16",
            "vgg16-397923af.pth",
            "https://download.pytorch.org/models/vgg16-397923af.pth",
            "397923af",
            "BSD-3 (torchvision)",
            "loss vgg; loss lpips net=vgg",
        ),
        WeightFile(
            "alexnet",
            "alexnet-owt-7be5be79.pth",
            "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            "7be5be79",
            "BSD-3 (torchvision)",
            "loss lpips net=alex",
        ),
        WeightFile(
            "squeezenet1_1",
            "squeezenet1_1-b8a52dc0.pth",
            "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
            "b8a52dc0",
            "BSD-3 (torchvision)",
            "loss lpips net=squeeze",
        ),
    ):
        register_weight_file(w)


CATALOG: Registry[WeightFile] = Registry("weight file", "fluidperc.weights", key=lambda w: w.name,
                                        describe=lambda w: f"{w.filename}, sha256 {w.sha256}", builtin=_builtin)


def register_weight_file(w: WeightFile) -> WeightFile:
    """Add a plugin's weight file to the catalog (fetch, list, verify and the preflight checks then know it)."""
    return CATALOG.register(w)


def _with_digests(catalog: dict[str, WeightFile], path: Path) -> dict[str, WeightFile]:
    import json
    from dataclasses import replace

    where = f"{path} (FLUIDPERC_WEIGHTS_DIGESTS)"
    try:
        digests = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{where}: cannot read it as JSON ({err}); expected {{name: sha256}}") from None
    if not isinstance(digests, dict):
        raise UserError(f"{where}: expected a JSON object {{name: sha256}}, got {type(digests).__name__}")
    for name, digest in digests.items():
        if name not in catalog:
            raise UserError(f"{where}: unknown weight file '{name}'; known: {', '.join(sorted(catalog))}")
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise UserError(f"{where}: key '{name}' has value {digest!r}; expected a 64-hex-digit sha256")
        catalog[name] = replace(catalog[name], sha256=digest)
    return catalog


def default_dirs() -> list[Path]:
    """$FLUIDPERC_WEIGHTS (default ~/.cache/fluidperc), then torch hub's checkpoints ($TORCH_HOME/hub/checkpoints)."""
    own = Path(os.environ.get("FLUIDPERC_WEIGHTS", Path.home() / ".cache" / "fluidperc"))
    torch_home = Path(os.environ.get("TORCH_HOME", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"))
    return [own, torch_home / "hub" / "checkpoints"]


class MissingWeightsError(UserError):
    pass


class ChecksumError(UserError):
    pass


@dataclass
class WeightStore:
    """Where weight files are looked for, in order, and what they must hash to."""

    dirs: list[Path]
    catalog: dict[str, WeightFile]

    @classmethod
    def from_env(cls) -> "WeightStore":
        """The default directories and catalog; $FLUIDPERC_WEIGHTS_DIGESTS names a JSON file {name: sha256} of
        digests a site trusts instead of the published ones (its own or re-trained trunks). Files are still
        checked; only what they must hash to changes."""
        catalog = dict(CATALOG)
        override = os.environ.get("FLUIDPERC_WEIGHTS_DIGESTS")
        if override:
            catalog = _with_digests(catalog, Path(override))
        return cls(default_dirs(), catalog)

    def entry(self, name: str) -> WeightFile:
        if name not in self.catalog:
            raise UserError(f"unknown weight file '{name}'; known: {', '.join(sorted(self.catalog))}")
        return self.catalog[name]

    def find(self, name: str) -> Path | None:
        filename = self.entry(name).filename
        for d in self.dirs:
            if (d / filename).is_file():
                return d / filename
        return None

    def verify(self, name: str, path: Path) -> None:
        want = self.entry(name).sha256
        got = sha256_of(path)
        if not got.startswith(want):
            raise ChecksumError(
                f"{path}: sha256 is {got}, expected {'a digest starting with ' if len(want) < 64 else ''}{want}; "
                f"the file is corrupt or not the published {self.entry(name).filename}. Delete it and run "
                f"`{FETCH_COMMAND} {name}`."
            )

    def resolve(self, name: str) -> Path:
        """The verified path of a weight file, or one clear error saying where we looked and how to fetch it."""
        path = self.find(name)
        if path is None:
            entry = self.entry(name)
            searched = ", ".join(str(d) for d in self.dirs)
            raise MissingWeightsError(
                f"the weights file {entry.filename} ({entry.used_by}) is missing; searched {searched}. "
                f"Fetch it on a machine with internet access with `{FETCH_COMMAND} {name}` "
                f"(or copy it into {self.dirs[0]}; set FLUIDPERC_WEIGHTS to use another directory)."
            )
        self.verify(name, path)
        return path

    def present(self, name: str) -> bool:
        return self.find(name) is not None

    def fetch(self, name: str, progress: bool = True) -> Path:
        """Download into the first directory unless a verified copy exists; atomic, checksum-checked."""
        from tqdm import tqdm

        existing = self.find(name)
        if existing is not None:
            self.verify(name, existing)
            return existing
        entry = self.entry(name)
        target_dir = self.dirs[0]
        target_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target_dir, prefix=f".{entry.filename}.")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=60) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=entry.filename, disable=not progress) as bar:
                    for block in iter(lambda: resp.read(1 << 20), b""):
                        out.write(block)
                        bar.update(len(block))
            self.verify(name, tmp)
            final = target_dir / entry.filename
            tmp.replace(final)
            return final
        except OSError as err:
            raise UserError(f"could not download {entry.url} ({err}); nothing was written") from None
        finally:
            tmp.unlink(missing_ok=True)


def _cmd_list(store: WeightStore) -> int:
    print(f"search order: {', '.join(str(d) for d in store.dirs)}")
    for w in store.catalog.values():
        path = store.find(w.name)
        print(f"{w.name:14s} {w.filename:28s} {'present: ' + str(path) if path else 'missing'}  [{w.used_by}]")
    return 0


def _cmd_verify(store: WeightStore, names: list[str]) -> int:
    bad = 0
    for name in names:
        path = store.find(name)
        if path is None:
            print(f"{name}: missing")
            continue
        try:
            store.verify(name, path)
            print(f"{name}: ok ({path})")
        except ChecksumError as err:
            bad += 1
            print(f"{name}: BAD: {err}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fluidperc.weights",
        description="List, fetch (with sha256 checks) and verify the pretrained weights the perceptual losses need. "
        "Run fetch on a login node: compute nodes are often offline, and nothing downloads at training time.",
    )
    p.add_argument("command", choices=["list", "fetch", "verify"])
    p.add_argument("names", nargs="*", help=f"weight files (default: all): {', '.join(CATALOG)}")
    args = p.parse_args(argv)
    store = WeightStore.from_env()
    names = args.names or list(store.catalog)
    for n in names:
        store.entry(n)
    if args.command == "list":
        return _cmd_list(store)
    if args.command == "verify":
        return _cmd_verify(store, names)
    for n in names:
        print(f"{n}: {store.fetch(n)}")
    return 0


if __name__ == "__main__":
    run_cli(main, "fluidperc.weights")
