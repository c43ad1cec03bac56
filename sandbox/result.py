"""What running one program produced, as data: untrusted code's failures are never exceptions here."""

from __future__ import annotations

from enum import StrEnum

import pydantic


class Status(StrEnum):
    """How a program ended."""

    ok = "ok"  # ran to the end (a called f returned a literal value within the caps)
    error = "error"  # raised, failed to compile, or exited non-zero
    timeout = "timeout"  # wall-clock or CPU limit
    memory = "memory"  # ran out of its address space (MemoryError)
    output_limit = "output_limit"  # stdout or stderr went over its cap
    output_too_long = "output_too_long"  # f's value has a repr longer than max_output_chars
    output_not_literal = "output_not_literal"  # f's value is not built from Python literals
    killed = "killed"  # died from a signal the sandbox did not send
    sandbox_error = "sandbox_error"  # the worker itself failed (it is restarted); not the program's fault


class ExecResult(pydantic.BaseModel):
    """The outcome of one program."""

    status: Status
    """How it ended."""
    value_repr: str | None = None
    """repr of f's value when a function was called and returned a literal (status ok)."""
    stdout: str = ""
    """Captured stdout, at most max_stdout_bytes."""
    stderr: str = ""
    """Captured stderr, at most max_stderr_bytes."""
    error: str | None = None
    """Last line of the error (e.g. `ZeroDivisionError: division by zero`)."""
    exit_code: int | None = None
    """The program's exit code (negative: killed by that signal); None when the sandbox stopped it."""
    seconds: float = 0.0
    """Wall-clock time of the program inside its worker."""
    detail: str | None = None
    """A short human explanation (which cap, which signal, ...)."""
    worker: int | None = None
    """Index of the pool worker that ran it (the determinism check uses two different ones)."""

    @property
    def ok(self) -> bool:
        return self.status is Status.ok
