"""`azr validate`: the sandbox turns valid proposals into tasks.

A proposal becomes a task only if it is well formatted, its program passes the static checks,
runs within the limits, returns a Python literal of bounded length, and gives equal outputs in two
separate interpreter processes (see ``sandbox.validate_tasks``). Rejections keep their reason.
Induction tasks keep all N outputs: the first ``propose.shown`` pairs are shown to the solver,
the rest are hidden and check its program.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from stages.config.schema import Config
from stages.method.kinds import KINDS
from stages.method.tasks import counts, share, task_id
from stages.model.engines.base import Progress
from stages.rundir.layout import PROPOSALS, TASKS, VALIDATIONS
from stages.rundir.records import Proposal, StageSummary, Task, Validation
from stages.rundir.run import Run
from stages.session import Session

if TYPE_CHECKING:
    from sandbox.pool import Sandbox
    from sandbox.tasks import TaskValidation


def to_validation(p: Proposal, verdict: TaskValidation | None, cfg: Config) -> Validation:
    """Join a proposal with its sandbox verdict (None: never sent, the format was wrong)."""
    if verdict is None:
        return Validation(
            proposal_id=p.proposal_id,
            type=p.type,
            valid=False,
            reason="format",
            detail=p.format_error or "badly formatted",
        )
    if not verdict.valid:
        return Validation(
            proposal_id=p.proposal_id, type=p.type, valid=False, reason=verdict.reason, detail=verdict.detail
        )
    task = Task(
        task_id=task_id(p.proposal_id),
        type=p.type,
        program=p.program or "",
        inputs=list(p.inputs),
        outputs=list(verdict.outputs),
        message=p.message or "",
        n_shown=KINDS[p.type].n_shown(cfg.propose.shown),
        iteration=p.iteration,
        proposal_id=p.proposal_id,
    )
    return Validation(proposal_id=p.proposal_id, type=p.type, valid=True, task=task)


def summarize(validations: list[Validation]) -> StageSummary:
    by_type = {t: [v for v in validations if v.type == t] for t in KINDS}
    reasons = counts(v.reason for v in validations if not v.valid)
    return StageSummary(
        count=len(validations),
        reasons=reasons,
        metrics={
            "valid": share(v.valid for v in validations),
            **{f"valid/{t}": share(v.valid for v in vs) for t, vs in by_type.items()},
            **{f"new_tasks/{t}": sum(v.valid for v in vs) for t, vs in by_type.items()},
            **{f"rejected/{r}": c for r, c in reasons.items()},
        },
    )


def validate_proposals(proposals: list[Proposal], sandbox: Sandbox, cfg: Config) -> list[Validation]:
    from sandbox.tasks import validate_tasks

    todo = [p for p in proposals if p.format_ok and p.program is not None]
    verdicts = validate_tasks(sandbox, [(p.program, list(p.inputs)) for p in todo], cfg.sandbox)
    by_id = {p.proposal_id: v for p, v in zip(todo, verdicts, strict=True)}
    return [to_validation(p, by_id.get(p.proposal_id), cfg) for p in proposals]


def run(run: Run, n: int, session: Session, *, force: bool = False, progress: Progress | None = None) -> StageSummary:
    """Write iters/N/validate/: validations.jsonl, tasks.jsonl (the valid ones), summary.json."""
    started = time.perf_counter()
    proposals = run.records(n, PROPOSALS)
    validations = validate_proposals(proposals, session.sandbox(), run.config)
    tasks = [v.task for v in validations if v.task is not None]
    return run.write_stage(n, "validate", {VALIDATIONS.name: validations, TASKS.name: tasks},
                           summarize(validations), force=force, started=started)
