"""The one place where exceptions become a one-line message and an exit code.

0 ok · 1 user error (bad input, missing model, a run in the wrong state, sandbox unavailable) ·
2 usage (Typer/Click) · 130 interrupted. `AZR_DEBUG=1` shows the traceback instead.
"""

from __future__ import annotations

from typing import Any

from stages.errors import AzrError


class UserError(AzrError):
    """A problem the user can fix; its message is one line saying what is wrong and how to fix it."""


def interrupted() -> Exception:
    """What a command raises after Ctrl-C / SIGTERM: a one-line note, exit 130. (Typer turns a
    KeyboardInterrupt into a bare exit 130 before `main()` could say anything.)"""
    import typer

    from azr_cli.display import error_line

    error_line("interrupted; completed stages are kept, rerun the same command to continue")
    return typer.Exit(130)


def on_sigterm(signum: int, frame: Any) -> None:
    """The SIGTERM handler of the commands that run stages: stop as Ctrl-C does (a stage in
    progress leaves only a temporary folder), then :func:`interrupted` says so."""
    raise KeyboardInterrupt
