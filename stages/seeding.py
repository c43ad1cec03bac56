"""`azr seed`: create a run with its seed tasks, or resume the seeding phase of an existing one,
then run the rounds it still owes (:func:`stages.seed.grow`) in one Session.

The caller follows it through :class:`stages.hooks.Hooks` (the CLI shows the rounds); what the
phase's rounds write and when a run owes them is :mod:`stages.seed`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages import seed
from stages.errors import RunError
from stages.hooks import Hooks
from stages.rundir.run import Run
from stages.seed import Standing


@dataclass
class SeedOutcome:
    """What :func:`seed_run` did."""

    run: Run
    standing: Standing
    """Where the seeding phase stands after this call."""
    grown: dict[str, Any] | None
    """What :func:`stages.seed.grow` returned; None when the run owed no round."""


def seed_run(path: Path, config_file: Path | None = None, sets: list[str] | None = None,
             flags: dict[str, Any] | None = None, force: bool = False, hooks: Hooks | None = None) -> SeedOutcome:
    """Create the run at `path` (``force``: replace the run there), or open it when it exists and
    its seeding phase can resume (RunError when it stopped short, or has nothing left to do); then
    run the phase's remaining rounds, to :func:`stages.seed.seeding_target`, within
    ``seed.max_rounds``. KeyboardInterrupt during the rounds becomes ``hooks.interrupted()``."""
    from stages.config.layers import load_config
    from stages.rundir.manifest import open_run

    hooks = hooks or Hooks()
    if (path / "manifest.json").exists() and not force:
        r, overrides = open_run(path, config_file, sets, flags)
        with r.writing():
            st = seed.standing(r)
            if st.state == "stopped":
                raise RunError(st.message(r.path))
            if not st.pending:  # nothing to resume
                raise RunError(f"{path} already holds a run; choose another --run or pass --force to replace it")
        hooks.opened(r, overrides)
    else:
        r = seed.run(path, load_config(config_file, sets, flags), force=force)
        hooks.opened(r, None)
    grown = None
    with r.writing():
        if seed.pending(r):
            from stages.session import Session

            hooks.starting(r)
            try:
                with Session(r) as session, hooks.view() as view:
                    grown = seed.grow(r, seed.seeding_target(r.config), session.policy_for(1), session.sandbox(),
                                      r.config.seed.max_rounds, view.progress, view.on_event)
            except KeyboardInterrupt:
                raise hooks.interrupted() from None
        st = seed.standing(r)
    return SeedOutcome(r, st, grown)
