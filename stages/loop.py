"""`azr loop`: propose → validate → solve → reward → update, iteration after iteration, with the
same stage functions as the standalone commands and one Session (the model stays in memory).

Resuming is free: each step asks the run directory for the first incomplete (iteration, stage),
so rerunning after any stop continues exactly there; completed stages are never redone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from stages import propose, reward, solve, update, validate
from stages.rundir import Run
from stages.session import Session

Event = dict[str, Any]


def run_stage(
    run: Run, n: int, stage: str, session: Session, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    if stage == "propose":
        return propose.run(run, n, session.policy_for(n), progress=progress)
    if stage == "validate":
        return validate.run(run, n, session.sandbox())
    if stage == "solve":
        return solve.run(run, n, session.policy_for(n), session.sandbox(), progress=progress)
    if stage == "reward":
        return reward.run(run, n)
    if stage == "update":
        return update.run(run, n, session)
    raise ValueError(f"unknown stage {stage!r}")


def run(
    run: Run,
    iters: int,
    session: Session,
    on_event: Callable[[Event], None] | None = None,
    progress_for: Callable[[int, str], Callable[[int, int], None] | None] | None = None,
    after_iteration: Callable[[int], None] | None = None,
) -> int:
    """Run until `iters` iterations are complete; returns how many stages ran in this call."""
    emit = on_event or (lambda e: None)
    ran = 0
    while run.completed_iterations() < iters:
        n, stage = run.next_pending()
        emit({"event": "start", "iteration": n, "stage": stage})
        start = time.perf_counter()
        summary = run_stage(run, n, stage, session, progress_for(n, stage) if progress_for else None)
        ran += 1
        emit(
            {
                "event": "done",
                "iteration": n,
                "stage": stage,
                "seconds": time.perf_counter() - start,
                "summary": summary,
            }
        )
        if stage == "update" and after_iteration is not None:
            after_iteration(n)
    return ran
