"""Everything a person looks at: Rich consoles, tables, progress. Stages never print; they hand
data (and progress callbacks) to this module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

_LITERALS: set[str] = set()  # user-given text (run paths, file names) that is never markup


def literal(text: object) -> None:
    """Remember a user-given text (a path from the command line) so that wherever it appears in a
    message written with Rich markup it is shown as typed: `runs/[bold]x[/]` is a folder name,
    not a style."""
    if "[" in (s := str(text)):
        _LITERALS.add(s)


class _Console(Console):
    """A Console whose markup never comes from the user: remembered literals are escaped before
    the markup is read, and a message that still is not valid markup is shown as plain text
    (never a MarkupError out of a command)."""

    def render_str(self, text: str, **kw: Any) -> Any:  # type: ignore[override]
        markup = kw.get("markup")
        if not (markup or (markup is None and self._markup)):
            return super().render_str(text, **kw)
        for lit in sorted(_LITERALS, key=len, reverse=True):
            if lit in text:
                text = text.replace(lit, escape(lit))
        try:
            return super().render_str(text, **kw)
        except MarkupError:
            return super().render_str(text, **{**kw, "markup": False})


out = _Console(highlight=False)
err = _Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")


def error_line(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)


def warn(message: str) -> None:
    err.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)


def info(message: str) -> None:
    err.print(message, soft_wrap=True)


def kv_table(title: str, rows: dict[str, Any]) -> Table:
    """A two-column table; the title, keys and values are data, shown as they are (no markup)."""
    t = Table(title=escape(title), show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows.items():
        t.add_row(escape(str(k)), escape(str(v)))
    return t


class StageProgress:
    """A progress callback for a stage: `cb(done, total, **info)`; a Rich bar on a terminal,
    a few plain lines otherwise (RunPod logs, scripts)."""

    def __init__(self, progress: Progress | None, label: str):
        self.progress = progress
        self.label = label
        self.task = None
        self._last_pct = -1

    def __call__(self, done: int, total: int, **info: Any) -> None:
        extra = " ".join(f"{k}={v}" for k, v in info.items())
        if self.progress is not None:
            if self.task is None:
                self.task = self.progress.add_task(self.label, total=total)
            self.progress.update(self.task, completed=done, total=total, description=f"{self.label} {extra}")
            return
        pct = int(100 * done / max(total, 1))
        if pct >= self._last_pct + 25 or done == total:
            self._last_pct = pct
            err.print(f"{self.label}: {done}/{total} {extra}", soft_wrap=True)


@contextmanager
def progress(label: str) -> Iterator[StageProgress]:
    if not err.is_terminal:
        yield StageProgress(None, label)
        return
    bar = Progress(
        TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=False,
    )
    with bar:
        yield StageProgress(bar, label)
