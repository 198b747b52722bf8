"""Directories and files that appear whole or not at all, also when two processes race to write the same one.

Everything is written into a sibling with a name no other process uses (host, pid and a random part), then
renamed into place. ``rename`` is atomic on POSIX file systems (NFS, Lustre and GPFS included) for a file, and
for a directory onto a missing name; a directory already in place is first moved aside to another unique name.
A crash at any point leaves either the old content, the new content, or a stray ``.tmp-*`` sibling that no
reader looks at.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path


def unique_sibling(path: Path, tag: str = "tmp") -> Path:
    """A name beside ``path`` that no other process, on this or another host, will pick."""
    return path.with_name(f".{path.name}.{tag}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_text(path: Path, text: str) -> None:
    """Replace a file's content atomically (readers see the old or the new text, never half)."""
    tmp = unique_sibling(path)
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def swap_in(tmp: Path, out: Path, replace: bool = True) -> bool:
    """Move the finished directory ``tmp`` to ``out``. With ``replace``, a directory already at ``out`` is
    replaced; without, it is kept and ``tmp`` discarded (another writer got there first). True if ``tmp`` won."""
    try:
        os.rename(tmp, out)
        return True
    except OSError:
        if not out.exists():
            raise
    if not replace:
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    old = unique_sibling(out, "old")
    try:
        os.rename(out, old)
    except FileNotFoundError:  # another writer moved it aside first
        pass
    try:
        os.rename(tmp, out)
    except OSError:
        if not out.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # a concurrent writer put its own (equal) result in place
        return False
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return True
