"""`azr seed`: create a run and write the seed tasks of the buffers, one per task kind.

Each kind writes its seed task (``TaskKind.seed_task``). The paper seeds every buffer with the
identity triplet (``def f(a): return a``, ``"Hello world"``). The induction seed is the same
program with N literal inputs of varied types and a message; outputs are the inputs' values
(computed by ``ast.literal_eval``, no code runs).

A new run then goes through the seeding phase (``seed.grow``, on by default, as in the paper):
the base model proposes, with no updates, until each buffer holds ``seed.target`` tasks (default
4·B, the paper's), so that iteration 1 does not train on copies of one task. `azr loop` runs it
before iteration 1; `azr seed` runs it too (`--grow M` asks for another target).

The phase is written like a stage, round by round: ``seed/round-K/`` holds the round's proposals,
validations (rejections keep their reason), the tasks it added and a summary, renamed into place
when complete. A stopped phase resumes at its first incomplete round; ``seed.max_rounds`` counts
rounds across reruns. Round K's choices follow the run seed and K alone, so the phase reproduces
exactly. The seed tasks are ``seed/base.jsonl`` plus the rounds' tasks
(:func:`stages.rundir.buffers.seed_buffer`); ``buffer/seed.jsonl`` is that list written out, and is
rewritten from the rounds whenever it lags (a crash between a round and the file loses nothing).

Whether a run still owes the phase is answered once, by :func:`standing`, for the loop, the stage
commands and `azr status`.
"""

from __future__ import annotations

import ast
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from stages.config.schema import Config
from stages.errors import RunError
from stages.method.kinds import KINDS
from stages.method.tasks import counts, seed_task_id, share
from stages.rundir.buffers import SEED_BASE, seed_buffer
from stages.rundir.jsonl import read_jsonl, write_jsonl
from stages.rundir.layout import ROUND_RECORDS
from stages.rundir.manifest import create_run
from stages.rundir.records import Proposal, StageSummary, Task, Validation
from stages.rundir.run import Run


def seed_tasks(cfg: Config) -> list[Task]:
    """One seed task per kind, as the kind writes it (the identity triplet, in the paper)."""
    n, shown = cfg.propose.induction_inputs, cfg.propose.shown
    return [Task(task_id=seed_task_id(name, 0), type=name, **kind.seed_task(n, shown)) for name, kind in KINDS.items()]


def run(path: Path, cfg: Config, force: bool = False) -> Run:
    """Create the run directory with the identity seeds, all at once (see `create_run`)."""

    def fill(new: Run) -> None:
        write_jsonl(new.seed_file, seed_tasks(cfg))
        new.rebuild_metrics()

    return create_run(path, cfg, force=force, fill=fill)


# ----------------------------------------------------------------------------- the seeding phase

Event = dict[str, Any]
"""What the phase reports while it runs: ``{"event": "round_start", "stage": "seed", "round": K,
"max_rounds": M}`` and ``{"event": "round_done", ..., "target": T, "seconds": s, "summary":
StageSummary}`` (the CLI prints a line per round; stages never print)."""

State = Literal["off", "closed", "reached", "pending", "short", "stopped"]


def seeding_target(cfg: Config) -> int:
    """Tasks per buffer the seeding phase fills to: ``seed.target``, else 4·B (the paper's)."""
    return cfg.seed.target if cfg.seed.target is not None else 4 * cfg.run.batch_size


@dataclass(frozen=True)
class Standing:
    """Where a run's seeding phase stands. ``state`` is one of:

    - ``off``: ``seed.grow`` is false; iteration 1 starts from the seed tasks there are.
    - ``closed``: an iteration has started, so the seed buffer can no longer change.
    - ``reached``: every buffer holds the target.
    - ``pending``: a buffer is short and fewer than ``seed.max_rounds`` rounds are complete.
    - ``short``: ``max_rounds`` rounds are complete, a buffer is short, ``seed.when_short`` is
      ``go_on``: iteration 1 starts with what there is.
    - ``stopped``: the same with ``when_short: stop``: nothing goes on until the config says how.
    """

    state: State
    rounds: int
    """Complete rounds (a run from before rounds were kept: 0)."""
    max_rounds: int
    target: int
    buffers: dict[str, int]
    """Seed tasks per type."""

    @property
    def pending(self) -> bool:
        """Rounds are left to run before iteration 1."""
        return self.state == "pending"

    @property
    def blocks(self) -> bool:
        """Iteration 1 may not start yet."""
        return self.state in ("pending", "stopped")

    def message(self, path: Path) -> str:
        """Why iteration 1 may not start yet, and how to go on (one line)."""
        if self.state == "pending":
            return (f"{path} has not finished its seeding phase ({self.rounds} of at most {self.max_rounds} rounds "
                    f"complete, buffers {self.buffers}, target {self.target}); run `azr seed --run {path}` (it "
                    "resumes) or `azr loop`, or --set seed.grow=false to skip it")
        return (f"{path}: the seeding phase stopped after {self.rounds} rounds (seed.max_rounds) with buffers "
                f"{self.buffers}, short of {self.target} per type (seed.target); to go on, pass --set "
                f"seed.max_rounds=N with N > {self.rounds} for more rounds, --set seed.when_short=go_on (or "
                "seed.grow=false) to start iteration 1 with what there is, or a lower --set seed.target=N")

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "rounds": self.rounds, "max_rounds": self.max_rounds, "target": self.target,
                "buffers": self.buffers}


def standing(run: Run) -> Standing:
    """The one answer to "does this run still owe its seeding phase?" (the loop, the stage commands
    and `azr status` all ask here)."""
    cfg = run.config
    target, rounds = seeding_target(cfg), run.seed_rounds()
    have = Counter(t.type for t in seed_buffer(run))
    buffers = {t: have[t] for t in KINDS}
    state: State
    if run.iterations():
        state = "closed"
    elif not cfg.seed.grow:
        state = "off"
    elif all(n >= target for n in buffers.values()):
        state = "reached"
    elif rounds < cfg.seed.max_rounds:
        state = "pending"
    else:
        state = "short" if cfg.seed.when_short == "go_on" else "stopped"
    return Standing(state, rounds, cfg.seed.max_rounds, target, buffers)


def pending(run: Run) -> bool:
    """Whether the seeding phase has rounds left to run before iteration 1 (see :func:`standing`)."""
    return standing(run).pending


def ensure_ready(run: Run) -> Standing:
    """RunError (one line saying how to go on) unless iteration 1 may start, by :func:`standing`;
    under the run lock, also brings ``buffer/seed.jsonl`` up to date with the complete rounds."""
    st = standing(run)
    if st.blocks:
        raise RunError(st.message(run.path))
    with run.writing():
        sync_seed_file(run)
    return st


def phase(run: Run, session: Any, progress: Callable[[int, int], None] | None = None,
          on_event: Callable[[Event], None] | None = None) -> StageSummary:
    """The rounds the run still owes (to :func:`seeding_target`, within ``seed.max_rounds`` in
    all), resuming after the last complete one. Whether iteration 1 may then start is
    :func:`ensure_ready`'s answer. The summary: rounds complete, what this call proposed and
    added, whether the target was reached, the buffers."""
    cfg = run.config
    grown = grow(run, seeding_target(cfg), session.policy_for(1), session.sandbox(), cfg.seed.max_rounds,
                 progress, on_event)
    metrics = {"rounds": grown["rounds"], "proposed": grown["proposed"], "reached": float(grown["reached"]),
               **{f"buffer/{t}": n for t, n in grown["buffers"].items()}}
    return StageSummary(count=grown["added"], metrics=metrics)


def normalized(program: str) -> str:
    """A program's text with formatting and comments gone, to recognise the same program twice."""
    try:
        return ast.unparse(ast.parse(program))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return program


def grow(run: Run, target: int, policy: Any, sandbox: Any, max_rounds: int = 20,
         progress: Callable[[int, int], None] | None = None,
         on_event: Callable[[Event], None] | None = None) -> dict[str, Any]:
    """The seeding phase's rounds: the base model proposes (no updates) and the sandbox validates,
    round after round, until every buffer holds `target` seed tasks or `max_rounds` rounds are
    complete (counting those of earlier calls: a complete round is never run again). Each round is
    written as ``seed/round-K/`` (:func:`seed_round`)."""
    emit = on_event or (lambda e: None)
    ran = proposed = added = 0
    with run.writing():
        begin(run)
        for k in range(run.seed_rounds() + 1, max_rounds + 1):
            tasks = seed_buffer(run)
            have = Counter(t.type for t in tasks)
            short = [t for t in KINDS if have[t] < target]
            if not short:
                break
            emit({"event": "round_start", "stage": "seed", "round": k, "max_rounds": max_rounds})
            summary = seed_round(run, k, tasks, short, target, policy, sandbox, progress)
            emit({"event": "round_done", "stage": "seed", "round": k, "max_rounds": max_rounds, "target": target,
                  "seconds": summary.metrics.get("seconds", 0.0), "summary": summary})
            ran, proposed = ran + 1, proposed + summary.count
            added += sum(int(summary.metrics.get(f"added/{t}", 0)) for t in KINDS)
        sizes = Counter(t.type for t in seed_buffer(run))
    buffers = {t: sizes[t] for t in KINDS}
    return {"rounds": run.seed_rounds(), "ran": ran, "proposed": proposed, "added": added, "buffers": buffers,
            "reached": all(n >= target for n in buffers.values())}


def seed_round(run: Run, k: int, tasks: list[Task], short: list[str], target: int, policy: Any, sandbox: Any,
               progress: Callable[[int, int], None] | None = None) -> StageSummary:
    """Round `k`: a proposal per batch slot of each short type, over the seed tasks so far
    (`tasks`), validated; the valid ones join the buffer (programs without comments and top-level
    statements other than imports, functions and classes; a program seen before, by normalised
    text and for induction with the same inputs, is not added twice). Writes ``seed/round-K/``:
    proposals.jsonl, validations.jsonl, tasks.jsonl (what joined), summary.json; then the seed file."""
    from stages.method.parsers import strip_comments, strip_globals
    from stages.method.tasks import derive_seed, seeding_proposal_id, stage_rng
    from stages.model.turns import generate
    from stages.propose import build_queries, to_record
    from stages.rundir.buffers import group_by_type
    from stages.validate import validate_proposals

    cfg = run.config
    started = time.perf_counter()
    rng = stage_rng(cfg.run.seed, 0, f"seed-grow-{k}")
    queries = [q for q in build_queries(group_by_type(tasks), cfg, rng, 0) if q.type in short]
    gen_start = time.perf_counter()
    gen = generate(policy, queries, cfg.propose, derive_seed(cfg.run.seed, 0, "seed-grow", k), progress)
    gen_s = time.perf_counter() - gen_start
    proposals: list[Proposal] = []
    for q, c in zip(queries, gen.completions, strict=True):
        rec = to_record(q, 0, c, cfg.propose.induction_inputs, cfg.reward.strict, policy.answer_prefix)
        if rec.program and KINDS[rec.type].proposes_program and cfg.validate_.strip_seed_comments:
            rec = rec.model_copy(update={"program": strip_globals(strip_comments(rec.program))})
        j = sum(r.type == q.type for r in proposals)
        proposals.append(rec.model_copy(update={"proposal_id": seeding_proposal_id(k, q.type, j)}))
    validations = validate_proposals(proposals, sandbox, cfg)
    new, skipped = admit(tasks, validations, target)
    summary = round_summary(k, proposals, validations, new, skipped, tasks, target, gen_s)
    files = dict(zip((f.name for f in ROUND_RECORDS), (proposals, validations, new), strict=True))
    summary = run.write_round(k, files, summary, started=started)
    sync_seed_file(run)
    return summary


def admit(tasks: list[Task], validations: list[Validation], target: int) -> tuple[list[Task], Counter[str]]:
    """The valid tasks that join the seed buffer, with seed ids, and why the others did not
    (``duplicate``: a program seen before; ``full``: its buffer already holds `target`)."""
    seen = {_seed_key(t.type, t.program, t.inputs) for t in tasks}
    have = Counter(t.type for t in tasks)
    new: list[Task] = []
    skipped: Counter[str] = Counter()
    for v in validations:
        if v.task is None:
            continue
        if have[v.type] >= target:
            skipped["full"] += 1
            continue
        key = _seed_key(v.type, v.task.program, v.task.inputs)
        if key in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(key)
        new.append(v.task.model_copy(update={"task_id": seed_task_id(v.type, have[v.type]), "iteration": 0}))
        have[v.type] += 1
    return new, skipped


def round_summary(k: int, proposals: list[Proposal], validations: list[Validation], new: list[Task],
                  skipped: Counter[str], before: list[Task], target: int, gen_s: float) -> StageSummary:
    props = {t: [p for p in proposals if p.type == t] for t in KINDS}
    vals = {t: [v for v in validations if v.type == t] for t in KINDS}
    sizes = Counter(t.type for t in [*before, *new])
    reasons = counts(v.reason for v in validations if not v.valid)
    tokens = sum(p.completion_tokens for p in proposals)
    return StageSummary(
        count=len(proposals),
        reasons=reasons,
        metrics={
            "round": k,
            "proposals": len(proposals),
            **{f"proposals/{t}": len(ps) for t, ps in props.items()},
            "format_ok": share(p.format_ok for p in proposals),
            "truncated": share(p.finish == "length" for p in proposals),
            "valid": share(v.valid for v in validations),
            **{f"valid/{t}": share(v.valid for v in vs) for t, vs in vals.items()},
            **{f"added/{t}": sum(x.type == t for x in new) for t in KINDS},
            "duplicates": skipped["duplicate"],
            "over_target": skipped["full"],
            **{f"buffer/{t}": sizes[t] for t in KINDS},
            "target": target,
            **{f"rejected/{r}": c for r, c in reasons.items()},
            "tokens": tokens,
            "tokens_per_s": round(tokens / gen_s, 2) if gen_s > 0 else 0.0,
            "generate_s": round(gen_s, 3),
        },
    )


def begin(run: Run) -> None:
    """Before the first round (under the run lock): keep the seed tasks as they are now as
    ``seed/base.jsonl``, from which the seed file is rebuilt after each round. On a run from
    before rounds were kept, that is whatever its seed file holds."""
    base = run.seed_dir / SEED_BASE
    if not base.is_file():
        tasks = seed_buffer(run)  # RunError if rounds exist without their base
        run.seed_dir.mkdir(exist_ok=True)
        write_jsonl(base, tasks)
    sync_seed_file(run)


def sync_seed_file(run: Run) -> None:
    """``buffer/seed.jsonl`` = :func:`seed_buffer` (under the run lock): rewritten, atomically, only
    when it lags behind the complete rounds (or is missing or damaged)."""
    if not (run.seed_dir / SEED_BASE).is_file():
        return
    tasks = seed_buffer(run)
    try:
        same = read_jsonl(run.seed_file, Task) == tasks
    except RunError:  # missing or damaged: it is derived, so write it again
        same = False
    if not same:
        write_jsonl(run.seed_file, tasks)


def _seed_key(task_type: str, program: str, inputs: list[str]) -> tuple[str, str, tuple[str, ...]]:
    return task_type, normalized(program), () if KINDS[task_type].proposes_program else tuple(inputs)
