"""The pipeline of one AZR iteration, as one table: propose → validate → solve → reward → update.

:data:`STAGES` maps each stage's name to the stage, in order. Everything that needs the stages
reads this table: `azr loop`, the five stage commands, `azr inspect` (which records a stage
writes), and the run directory (which folders make an iteration complete). A stage is called as
``STAGES[name](run, n, session, force=False, progress=None) -> StageSummary``; its module is
imported on the first call, so reading the table is free (`azr --help` stays instant).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stages.rundir.records import Proposal, Record, Rollout, Sample, StageSummary, Task, Validation

Progress = Callable[[int, int], None]
"""A progress callback: (done, total)."""


@dataclass(frozen=True)
class Stage:
    """One stage: where its `run` lives, what it writes, and one line of help."""

    name: str
    module: str
    records: dict[str, type[Record]] = field(default_factory=dict)
    """The record files it writes, with their schema."""
    help: str = ""

    def __call__(self, run: Any, n: int, session: Any, *, force: bool = False,
                 progress: Progress | None = None) -> StageSummary:
        """Run the stage of iteration ``n`` of ``run`` (a Run), with ``session`` (a Session)."""
        stage_run = importlib.import_module(self.module).run
        return stage_run(run, n, session, force=force, progress=progress)


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("propose", "stages.propose", {"proposals.jsonl": Proposal},
              "The proposer writes B task proposals per type (deduction, abduction, induction)."),
        Stage("validate", "stages.validate", {"validations.jsonl": Validation, "tasks.jsonl": Task},
              "The sandbox validates every proposal; valid ones become tasks (rejections keep a reason)."),
        Stage("solve", "stages.solve", {"rollouts.jsonl": Rollout},
              "The solver answers n rollouts per new task and its training batch; the sandbox checks them."),
        Stage("reward", "stages.reward", {"samples.jsonl": Sample},
              "Proposer (learnability) and solver rewards, and TRR++ advantages per (type, role)."),
        Stage("update", "stages.update", {},
              "One optimizer step (TRR++ or PPO) on the iteration's samples, then a checkpoint."),
    )
}

STAGE_NAMES: tuple[str, ...] = tuple(STAGES)
"""The stages of an iteration, in order (the table's keys)."""
