"""`azr loop`: propose → validate → solve → reward → update, iteration after iteration, with the
same stage table as the standalone commands (:data:`stages.pipeline.STAGES`) and one Session (the
model stays in memory).

A new run first goes through the seeding phase (``seed.grow``), round by round, as long as
:func:`stages.seed.standing` says it owes rounds; iteration 1 starts only when it says so (the
stage commands ask the same). Resuming is free: each step asks the run directory for the first
incomplete seeding round or (iteration, stage), so rerunning after any stop continues exactly
there; completed rounds and stages are never redone.

:func:`run_loop` is the whole of `azr loop` (open or create the run, one Session, the trackers,
the evaluations after an iteration); the caller follows it through
:class:`stages.hooks.Hooks`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages import pipeline, seed
from stages.hooks import Hooks
from stages.model.engines.base import Progress
from stages.rundir.run import Run
from stages.session import Session

Event = dict[str, Any]


def run(
    run: Run,
    iters: int,
    session: Session,
    on_event: Callable[[Event], None] | None = None,
    progress_for: Callable[[int, str], Progress | None] | None = None,
    after_iteration: Callable[[int], None] | None = None,
) -> int:
    """The seeding phase's rounds if the run still owes them, then stages until `iters` iterations
    are complete; returns how many stages ran in this call (the seeding phase counts as one).
    RunError (one line saying how to go on) when the seeding phase stopped short of its target
    with ``seed.when_short: stop``. Seeding rounds are reported as ``round_start``/``round_done``
    events (see :data:`stages.seed.Event`)."""
    emit = on_event or (lambda e: None)
    ran = 0
    if seed.pending(run):
        emit({"event": "start", "iteration": 0, "stage": "seed"})
        start = time.perf_counter()
        summary = seed.phase(run, session, progress_for(0, "seed") if progress_for else None, on_event=emit)
        ran += 1
        st = seed.ensure_ready(run)
        emit({"event": "done", "iteration": 0, "stage": "seed", "seconds": time.perf_counter() - start,
              "summary": summary, "standing": st.state})
    elif run.completed_iterations() < iters:
        seed.ensure_ready(run)
    while run.completed_iterations() < iters:
        n, stage = run.next_pending()
        emit({"event": "start", "iteration": n, "stage": stage})
        start = time.perf_counter()
        progress = progress_for(n, stage) if progress_for else None
        summary = pipeline.STAGES[stage](run, n, session, progress=progress)
        ran += 1
        emit({"event": "done", "iteration": n, "stage": stage, "seconds": time.perf_counter() - start,
              "summary": summary})
        if stage == pipeline.STAGE_NAMES[-1] and after_iteration is not None:
            after_iteration(n)
    return ran


@dataclass
class LoopOutcome:
    """What :func:`run_loop` did."""

    run: Run
    completed_before: int
    """Complete iterations the run had when the call began."""
    ran: int | None
    """Stages run (the seeding phase counts as one); None: the run already had enough iterations."""


def run_loop(path: Path, iters: int, config_file: Path | None = None, sets: list[str] | None = None,
             flags: dict[str, Any] | None = None, hooks: Hooks | None = None) -> LoopOutcome:
    """`azr loop`: open the run at `path` (runtime overrides only) or create it with its seed
    tasks, then, unless it already has `iters` complete iterations, :func:`run` it in one Session
    under the run lock: every stage's metrics go to the trackers (TensorBoard, W&B) and the suites
    due after an iteration (``eval.every``) are evaluated. KeyboardInterrupt during the stages
    becomes ``hooks.interrupted()``."""
    from stages.config.layers import load_config
    from stages.monitor.tracking import Tracker
    from stages.rundir.manifest import open_run

    hooks = hooks or Hooks()
    if (path / "manifest.json").exists():
        r, overrides = open_run(path, config_file, sets, flags)
        hooks.opened(r, overrides)
    else:
        r = seed.run(path, load_config(config_file, sets, flags))
        hooks.opened(r, None)
    done = r.completed_iterations()
    if done >= iters:
        return LoopOutcome(r, done, None)
    hooks.starting(r)
    tracker = Tracker(r)
    try:
        with r.writing(), Session(r) as session, hooks.view() as view:
            def on_event(e: Event) -> None:
                view.on_event(e)
                if e["event"] == "done":
                    tracker.log(e["iteration"], e["stage"], e["summary"].metrics)

            def after_iteration(n: int) -> None:
                from stages.evaluation.evaluate import maybe_evaluate

                for ev in maybe_evaluate(r, n, session):
                    tracker.log(n, f"eval/{ev.get('suite')}", {"score": ev.get("score")})
                    hooks.evaluated(n, ev)

            ran = run(r, iters, session, on_event=on_event, progress_for=lambda n, s: view.progress,
                      after_iteration=after_iteration)
    except KeyboardInterrupt:
        raise hooks.interrupted() from None
    finally:
        tracker.close()
    return LoopOutcome(r, done, ran)
