"""The run directory's names, declared once: the stages of an iteration in order, what each is
for, and the record files each writes with their schema. The run (:mod:`stages.rundir.run`), the
stage table (:mod:`stages.pipeline`), the stage commands, `azr inspect` and the report read them
here; nobody spells a record file's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from stages.rundir.records import Proposal, Record, Rollout, Sample, Task, Validation

R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class RecordFile(Generic[R]):
    """One JSONL record file: the stage that writes it, its name, and its schema."""

    stage: str
    name: str
    schema: type[R]


PROPOSALS = RecordFile("propose", "proposals.jsonl", Proposal)
VALIDATIONS = RecordFile("validate", "validations.jsonl", Validation)
TASKS = RecordFile("validate", "tasks.jsonl", Task)
ROLLOUTS = RecordFile("solve", "rollouts.jsonl", Rollout)
SAMPLES = RecordFile("reward", "samples.jsonl", Sample)

STAGE_HELP: dict[str, str] = {
    "propose": "The proposer writes B task proposals per type (deduction, abduction, induction).",
    "validate": "The sandbox validates every proposal; valid ones become tasks (rejections keep a reason).",
    "solve": "The solver answers n rollouts per new task and its training batch; the sandbox checks them.",
    "reward": "Proposer (learnability) and solver rewards, and TRR++ advantages per (type, role).",
    "update": "One optimizer step (TRR++ or PPO) on the iteration's samples, then a checkpoint.",
}
"""The stages of an iteration, in order, with one line of help each."""

STAGE_NAMES: tuple[str, ...] = tuple(STAGE_HELP)
"""The stages of an iteration, in order: the folders that make an iteration complete."""

STAGE_RECORDS: dict[str, tuple[RecordFile, ...]] = {
    stage: tuple(f for f in (PROPOSALS, VALIDATIONS, TASKS, ROLLOUTS, SAMPLES) if f.stage == stage)
    for stage in STAGE_NAMES
}
"""The record files each stage writes (update writes none: its output is the checkpoint)."""

ROUND_RECORDS: tuple[RecordFile, ...] = (PROPOSALS, VALIDATIONS, TASKS)
"""The record files of a seeding round (``seed/round-K/``): a propose and a validate stage in one."""
