"""The pipeline of one AZR iteration, as one table: propose → validate → solve → reward → update.

:data:`STAGES` maps each stage's name (:data:`stages.rundir.layout.STAGE_NAMES`, in order) to the
stage: its ``run`` function, the record files it writes and one line of help. `azr loop` and the
five stage commands call it; the names, files and help live below, in the run directory's layout,
so that reading them (`azr --help`, `azr inspect`, the run itself) imports no stage.
A stage is called as ``STAGES[name](run, n, session, force=False, progress=None) -> StageSummary``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stages import propose, reward, solve, update, validate
from stages.model.engines.base import Progress
from stages.rundir.layout import STAGE_HELP, STAGE_NAMES, STAGE_RECORDS, RecordFile
from stages.rundir.records import Record, StageSummary
from stages.rundir.run import Run
from stages.session import Session

StageRun = Callable[..., StageSummary]
"""``run(run, n, session, *, force=False, progress=None) -> StageSummary``."""


@dataclass(frozen=True)
class Stage:
    """One stage: its ``run``, what it writes, and one line of help."""

    name: str
    run: StageRun
    files: tuple[RecordFile, ...]
    help: str

    @property
    def records(self) -> dict[str, type[Record]]:
        """The record files it writes, by name, with their schema."""
        return {f.name: f.schema for f in self.files}

    def __call__(self, run: Run, n: int, session: Session, *, force: bool = False,
                 progress: Progress | None = None) -> StageSummary:
        """Run the stage of iteration ``n`` of ``run``."""
        return self.run(run, n, session, force=force, progress=progress)


_RUNS: dict[str, StageRun] = {"propose": propose.run, "validate": validate.run, "solve": solve.run,
                              "reward": reward.run, "update": update.run}

STAGES: dict[str, Stage] = {name: Stage(name, _RUNS[name], STAGE_RECORDS[name], STAGE_HELP[name])
                            for name in STAGE_NAMES}

__all__ = ["STAGES", "STAGE_NAMES", "Progress", "Stage"]
