"""The one place where exceptions become a one-line message and an exit code.

0 ok · 1 user error (bad input, missing model, a run in the wrong state, sandbox unavailable) ·
2 usage (Typer/Click) · 130 interrupted. `AZR_DEBUG=1` shows the traceback instead.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; its message is one line saying what is wrong and how to fix it."""
