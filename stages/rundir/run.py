"""An opened run directory: its layout, its progress, and the one way stages write into it.

```
runs/<name>/
  manifest.json  config.yaml  buffer/seed.jsonl  metrics.jsonl
  seed/base.jsonl  seed/round-000001/   the seeding phase: its rounds' records + summary.json
  iters/000001/{propose,validate,solve,reward,update}/   records (*.jsonl) + summary.json
  checkpoints/000001/
```
A stage writes into ``iters/N/.<stage>.tmp-<pid>`` and renames it into place when complete: the
folder's existence is the completion mark. A round of the seeding phase is written the same way,
into ``seed/round-K/``. Leftover temporary folders (a crash, a kill -9) are never read, and are
removed when the stage is written again. Nothing is edited in place.

Every write happens under the run lock (:mod:`stages.rundir.lock`): one writing process per run,
so a temporary folder found by the writer always belongs to a dead process and is safe to remove.
Creating and opening a run (manifest, config, checks) is :mod:`stages.rundir.manifest`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from stages.config.schema import Config
from stages.errors import RunError
from stages.method.tasks import iteration_tag
from stages.rundir import lock
from stages.rundir.atomic import atomic_folder, remove_stale, write_bytes
from stages.rundir.jsonl import read_json, read_jsonl, write_json, write_jsonl
from stages.rundir.layout import STAGE_NAMES, RecordFile
from stages.rundir.records import StageSummary

M = TypeVar("M", bound=BaseModel)


class Run:
    """An opened run directory. Construct with :func:`stages.rundir.manifest.create_run` or
    :func:`stages.rundir.manifest.open_run`."""

    def __init__(self, path: Path, config: Config, manifest: dict[str, Any],
                 overrides: dict[str, Any] | None = None):
        self.path = path
        self.config = config
        self.manifest = manifest
        self.overrides = overrides or {}
        """Runtime fields overridden for this invocation; recorded in each stage's summary."""

    # ---- layout
    @property
    def seed_file(self) -> Path:
        return self.path / "buffer" / "seed.jsonl"

    def iter_dir(self, n: int) -> Path:
        return self.path / "iters" / iteration_tag(n)

    def stage_dir(self, n: int, stage: str) -> Path:
        return self.iter_dir(n) / stage

    def checkpoint_dir(self, n: int) -> Path:
        return self.path / "checkpoints" / iteration_tag(n)

    def checkpoints(self) -> list[int]:
        """Iterations that have a checkpoint, oldest first (a checkpoint folder is renamed into
        place when complete, so its existence is the mark, as for a stage)."""
        root = self.path / "checkpoints"
        if not root.is_dir():
            return []
        return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and p.is_dir())

    def is_done(self, n: int, stage: str) -> bool:
        return self.stage_dir(n, stage).is_dir()

    @property
    def seed_dir(self) -> Path:
        """The seeding phase's records: ``base.jsonl`` (the seed tasks before its first round) and
        a folder per complete round."""
        return self.path / "seed"

    def round_dir(self, k: int) -> Path:
        return self.seed_dir / f"round-{iteration_tag(k)}"

    def seed_rounds(self) -> int:
        """Rounds 1..k of the seeding phase all complete: k (0 for a run from before seeding
        rounds were kept, or one that never grew)."""
        k = 0
        while self.round_dir(k + 1).is_dir():
            k += 1
        return k

    # ---- progress
    def iterations(self) -> list[int]:
        root = self.path / "iters"
        if not root.is_dir():
            return []
        return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())

    def completed_iterations(self) -> int:
        """Iterations 1..k all fully complete: k."""
        k = 0
        while all(self.is_done(k + 1, s) for s in STAGE_NAMES):
            k += 1
        return k

    def next_pending(self) -> tuple[int, str]:
        """The first incomplete (iteration, stage), in order."""
        n = self.completed_iterations() + 1
        for s in STAGE_NAMES:
            if not self.is_done(n, s):
                return n, s
        raise AssertionError("unreachable")

    def resolve_iter(self, stage: str, requested: int | None, force: bool) -> int:
        """Which iteration a standalone stage command works on (default: the first incomplete
        iteration), checked against what exists."""
        n = requested if requested is not None else self.completed_iterations() + 1
        if n < 1:
            raise RunError(f"--iter must be 1 or more, got {n}")
        idx = STAGE_NAMES.index(stage)
        for prev in STAGE_NAMES[:idx]:
            if not self.is_done(n, prev):
                raise RunError(
                    f"iteration {n}: stage '{prev}' is not complete yet; run `azr {prev} --run {self.path}` first"
                )
        if n > 1 and not self.is_done(n - 1, STAGE_NAMES[-1]):
            raise RunError(f"iteration {n - 1} is not complete; finish it before iteration {n}")
        if self.is_done(n, stage) and not force:
            raise RunError(
                f"iteration {n}: stage '{stage}' is already complete; pass --force to redo it "
                "(later stages of that iteration are then out of date)"
            )
        return n

    @contextmanager
    def writing(self) -> Iterator[Run]:
        """Hold the run lock for the block (re-entrant); raise RunLocked if another process writes."""
        with lock.hold(self.path):
            yield self

    @contextmanager
    def stage_writer(self, n: int, stage: str, force: bool = False) -> Iterator[Path]:
        """Yield a temporary folder; on success it becomes ``iters/N/<stage>`` atomically."""
        with self._folder_writer(self.stage_dir(n, stage), f"iteration {n}: stage '{stage}'", force) as tmp:
            yield tmp

    @contextmanager
    def _folder_writer(self, final: Path, what: str, force: bool) -> Iterator[Path]:
        with self.writing():
            if final.exists() and not force:
                raise RunError(f"{what} is already complete (use --force)")
            final.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(final.parent, f".{final.name}")  # under the lock: their writers are dead
            with atomic_folder(final, replace=True) as tmp:
                yield tmp
            self.rebuild_metrics()

    def write_stage(self, n: int, stage: str, files: dict[str, list[Any]], summary: StageSummary,
                    force: bool = False, started: float | None = None) -> StageSummary:
        """Write a stage's record files and summary.json, all or nothing, and return the summary
        as written. `started` (a perf_counter reading) adds the stage's wall time to its metrics."""
        summary = self._stamped(summary, started)
        with self.stage_writer(n, stage, force=force) as tmp:
            self._fill(tmp, files, summary)
        return summary

    def write_round(self, k: int, files: dict[str, list[Any]], summary: StageSummary,
                    started: float | None = None) -> StageSummary:
        """Write round ``k`` of the seeding phase (``seed/round-K/``) as a stage is written: record
        files and summary.json, all or nothing. A complete round is never rewritten."""
        summary = self._stamped(summary, started)
        with self._folder_writer(self.round_dir(k), f"seeding round {k}", force=False) as tmp:
            self._fill(tmp, files, summary)
        return summary

    def _stamped(self, summary: StageSummary, started: float | None) -> StageSummary:
        update: dict[str, Any] = {"overrides": self.overrides}
        if started is not None:
            update["metrics"] = {**summary.metrics, "seconds": round(time.perf_counter() - started, 3)}
        return summary.model_copy(update=update)

    @staticmethod
    def _fill(folder: Path, files: dict[str, list[Any]], summary: StageSummary) -> None:
        for name, records in files.items():
            write_jsonl(folder / name, records)
        write_json(folder / "summary.json", summary.model_dump(mode="json", exclude_defaults=True))

    # ---- records
    def read(self, n: int, stage: str, filename: str, model: type[M]) -> list[M]:
        if not self.is_done(n, stage):
            raise RunError(f"iteration {n}: stage '{stage}' has not completed; run `azr {stage}` first")
        return read_jsonl(self.stage_dir(n, stage) / filename, model)

    def records(self, n: int, file: RecordFile[M]) -> list[M]:
        """The records of ``file`` (say :data:`~stages.rundir.layout.TASKS`) of iteration ``n``."""
        return self.read(n, file.stage, file.name, file.schema)

    def round_records(self, k: int, file: RecordFile[M]) -> list[M]:
        """The records of ``file`` of seeding round ``k``."""
        return self.read_round(k, file.name, file.schema)

    def read_round(self, k: int, filename: str, model: type[M]) -> list[M]:
        if not self.round_dir(k).is_dir():
            raise RunError(f"seeding round {k} has not completed; run `azr seed --run {self.path}` (it resumes)")
        return read_jsonl(self.round_dir(k) / filename, model)

    def summary(self, n: int, stage: str) -> StageSummary:
        return self._read_summary(self.stage_dir(n, stage) / "summary.json")

    def round_summary(self, k: int) -> StageSummary:
        return self._read_summary(self.round_dir(k) / "summary.json")

    @staticmethod
    def _read_summary(path: Path) -> StageSummary:
        try:
            return StageSummary.model_validate(read_json(path))
        except ValidationError as e:
            err = e.errors()[0]
            raise RunError(f"{path}: not a stage summary ('{'.'.join(map(str, err['loc']))}': {err['msg']}); "
                           "the file is damaged") from None

    def check_stages(self) -> None:
        """Every completed stage (and seeding round) has a readable summary.json, or RunError
        naming the file."""
        for k in range(1, self.seed_rounds() + 1):
            try:
                self.round_summary(k)
            except RunError as e:
                raise RunError(f"{e}; delete {self.round_dir(k)} and rerun `azr seed --run {self.path}`") from None
        for n in self.iterations():
            for s in STAGE_NAMES:
                if self.is_done(n, s):
                    try:
                        self.summary(n, s)
                    except RunError as e:
                        raise RunError(f"{e}; delete {self.stage_dir(n, s)} and rerun `azr {s} --run {self.path} "
                                       f"--iter {n}`") from None

    def rebuild_metrics(self) -> None:
        """metrics.jsonl = one line per completed seeding round (iteration 0, stage ``seed``) and
        per completed stage, derived from the summaries; rewritten atomically so it never holds a
        half line."""
        lines = []
        for k in range(1, self.seed_rounds() + 1):
            if (self.round_dir(k) / "summary.json").exists():
                lines.append({"iteration": 0, "stage": "seed", "round": k, **self.round_summary(k).metrics})
        for n in self.iterations():
            for s in STAGE_NAMES:
                if (self.stage_dir(n, s) / "summary.json").exists():
                    lines.append({"iteration": n, "stage": s, **self.summary(n, s).metrics})
        write_bytes(self.path / "metrics.jsonl", b"".join(orjson.dumps(x) + b"\n" for x in lines))

    def metrics(self) -> list[dict[str, Any]]:
        p = self.path / "metrics.jsonl"
        if not p.exists():
            return []
        lines: list[dict[str, Any]] = []
        for i, x in enumerate(p.read_bytes().splitlines(), start=1):
            if not x.strip():
                continue
            try:
                line = orjson.loads(x)
            except orjson.JSONDecodeError as e:
                line = e
            if not isinstance(line, dict):
                why = f"not valid JSON ({line})" if isinstance(line, Exception) else "not a JSON object"
                raise RunError(f"{p}:{i}: {why}; the file is damaged: delete it (it is rebuilt from the stage "
                               "summaries at the next stage write)")
            lines.append(line)
        return lines
