"""User-facing errors: one paragraph, no traceback, nothing submitted (shared with fluidperc)."""

from fluidperc.errors import UserError, run_cli

__all__ = ["UserError", "run_cli"]
