"""The errors azr raises for problems a user can fix: each message is one line saying what is
wrong and how to fix it. The CLI maps every :class:`AzrError` to that line and exit code 1, by
type (importing this module is free: it imports nothing)."""

from __future__ import annotations


class AzrError(Exception):
    """A problem the user can fix; the message is one line."""


class ConfigError(AzrError):
    """A configuration problem: what, why, how to fix it."""


class RunError(AzrError):
    """A run directory is missing, damaged, of another format, or in the wrong state."""


class RunLocked(RunError):
    """Another process is writing this run."""


class ModelError(AzrError):
    """A model problem: unknown name, missing package, bad checkpoint."""


class EvalError(AzrError):
    """An evaluation problem: unknown suite, missing or malformed data."""
