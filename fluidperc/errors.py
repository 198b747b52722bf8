"""The one exception type for bad input that a user can fix, and the CLI wrapper that prints it.

Entry points print a UserError as a single paragraph (no traceback) naming the file, key, value and what was
expected. hpc re-uses both, so a bad sweep and a bad loss spec read the same way.
"""

from __future__ import annotations

import sys
from typing import Callable, NoReturn


class UserError(ValueError):
    """Bad input: a file, key or value the user gave us. Printed without a traceback."""


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
