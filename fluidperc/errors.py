"""The one exception type for bad input that a user can fix.

Entry points print it as a single paragraph (no traceback); it names the file, key, value and what was
expected. hpc re-uses it, so a bad sweep and a bad loss spec read the same way.
"""


class UserError(ValueError):
    """Bad input: a file, key or value the user gave us. Printed without a traceback."""
