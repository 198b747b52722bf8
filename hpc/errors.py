"""User-facing errors: one paragraph, no traceback, nothing submitted."""

from __future__ import annotations

import sys
from typing import Callable, NoReturn


from fluidperc.errors import UserError

__all__ = ["UserError", "exit_with", "run_cli"]


def exit_with(err: BaseException, prog: str) -> NoReturn:
    print(f"{prog}: error: {err}", file=sys.stderr)
    raise SystemExit(2)


def run_cli(main: Callable[[], int | None], prog: str) -> NoReturn:
    """Run a CLI body, turning UserError (and Ctrl-C) into a short message and exit status."""
    try:
        code = main()
    except UserError as err:
        exit_with(err, prog)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; relaunch the same command to finish the missing work.", file=sys.stderr)
        raise SystemExit(130)
    raise SystemExit(code or 0)
