"""How a caller follows a long library call (:func:`stages.loop.run_loop`,
:func:`stages.seeding.seed_run`): the CLI subclasses :class:`Hooks` to show it. Cheap to import
(nothing of the stages), so a command module can define its hooks at import time."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stages.rundir.run import Run


class Hooks:
    """What the library call tells its caller, and what it raises when interrupted. Every hook
    does nothing by default."""

    def opened(self, run: Run, overrides: dict[str, Any] | None) -> None:
        """The run is open, with these runtime overrides applied; None: it was just created."""

    def starting(self, run: Run) -> None:
        """Stages (or seeding rounds) are about to run: before the trackers, the run lock and the
        session (the CLI turns SIGTERM into KeyboardInterrupt here)."""

    def view(self) -> contextlib.AbstractContextManager[Any]:
        """A context entered once the session is open, around the stages; what it yields takes
        the events (``on_event(e)``) and holds the progress callback (``progress``, or None)."""
        return contextlib.nullcontext(SimpleNamespace(on_event=lambda e: None, progress=None))

    def evaluated(self, iteration: int, result: dict[str, Any]) -> None:
        """A suite was evaluated after `iteration` (``eval.every``); `result` is its summary."""

    def interrupted(self) -> BaseException:
        """What to raise instead of the KeyboardInterrupt (Ctrl-C, or SIGTERM) that stopped the stages."""
        return KeyboardInterrupt()
