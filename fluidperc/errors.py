"""The one exception type for bad input that a user can fix, and the CLI wrapper that prints it.

Entry points print a UserError as a single paragraph (no traceback) naming the file, key, value and what was
expected. hpc re-uses both, so a bad sweep and a bad loss spec read the same way.

Every message passes through :func:`one_paragraph` when the error is made, so a value the user gave (a key with a
newline, a name with a bidi override, a megabyte of text) cannot break the paragraph or disguise what it quotes,
whichever of the many ``raise UserError(f"...")`` sites quoted it.
"""

from __future__ import annotations

import re
import sys
from typing import Callable, NoReturn

MAX_QUOTED = 120  # a quoted value ('...') longer than this is cut in the middle
MAX_RUN = 240  # a run of characters without a space (a path, a token) longer than this is cut
MAX_MESSAGE = 3000  # the whole paragraph

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_QUOTED = re.compile(r"(?<!\w)'([^']{%d,}?)'(?!\w)" % (MAX_QUOTED + 1))  # not an apostrophe (sweep's, don't)
_RUN = re.compile(r"\S{%d,}" % (MAX_RUN + 1))


def _visible(ch: str) -> str:
    """The character itself, or its escape when it does not print as itself: control and format characters
    (bidi overrides, zero-width joiners), separators other than the space, surrogates, unassigned code points."""
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if not ch.isprintable():
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    return ch


def _cut(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters long: its head and tail around an ellipsis."""
    if len(text) <= limit:
        return text
    keep = limit - 1
    return text[: keep - keep // 3] + "…" + text[len(text) - keep // 3:]


def one_paragraph(message: str) -> str:
    """The message as one printable paragraph: controls and bidi/format characters escaped, long quoted values
    and long unbroken runs cut with an ellipsis, the whole bounded. Idempotent, so a message that is wrapped
    again (a validator's error inside a sweep error) reads the same."""
    text = "".join(_visible(ch) for ch in str(message))
    text = _QUOTED.sub(lambda m: "'" + _cut(m.group(1), MAX_QUOTED) + "'", text)
    text = _RUN.sub(lambda m: _cut(m.group(0), MAX_RUN), text)
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1] + "…"
    return text


class UserError(ValueError):
    """Bad input: a file, key or value the user gave us. Printed without a traceback, always as one paragraph."""

    def __init__(self, message: object = "") -> None:
        super().__init__(one_paragraph(str(message)))


def run_cli(main: Callable[[], int | None], prog: str) -> NoReturn:
    """Run a CLI body, turning UserError (and Ctrl-C) into a short message and an exit status."""
    try:
        code = main()
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command again to finish the missing work.", file=sys.stderr)
        raise SystemExit(130)
    raise SystemExit(code or 0)
