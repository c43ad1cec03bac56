"""`azr seed`: create a run and write the seed tasks of the three buffers.

The paper seeds every buffer with the identity triplet (``def f(a): return a``, ``"Hello
world"``). The induction seed is the same program with N literal inputs of varied types and a
message; outputs are the inputs' values (computed by ``ast.literal_eval``, no code runs).

A new run then goes through the seeding phase (``seed.grow``, on by default, as in the paper):
the base model proposes, with no updates, until each buffer holds ``seed.target`` tasks (default
4·B, the paper's), so that iteration 1 does not train on copies of one task. `azr loop` runs it
before iteration 1; `azr seed` runs it too (`--grow M` asks for another target).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stages.config.schema import Config
from stages.errors import RunError
from stages.method.tasks import TASK_TYPES, seed_task_id
from stages.rundir.jsonl import read_jsonl, write_jsonl
from stages.rundir.manifest import create_run
from stages.rundir.records import StageSummary, Task
from stages.rundir.run import Run

IDENTITY_PROGRAM = "def f(a):\n    return a"
IDENTITY_INPUT = '"Hello world"'
INDUCTION_INPUTS = [
    '"Hello world"', "42", "[1, 2, 3]", "{'a': 1, 'b': [2, 3]}", "(2.5, None)",
    "True", "''", "-7", "[[], {}]", "'multi\\nline'", "3.0e-3", "(1, (2, (3,)))",
]
IDENTITY_MESSAGE = "The function gives back exactly what it is given."


def identity_output(arg_text: str) -> str:
    """repr of f(*args) for the identity program: the value of the single literal argument."""
    value = ast.literal_eval(arg_text)
    return repr(value)


def seed_tasks(cfg: Config) -> list[Task]:
    n = cfg.propose.induction_inputs
    inputs = INDUCTION_INPUTS[:n]
    while len(inputs) < n:  # more than we list: distinct integers
        inputs.append(str(len(inputs) * 11))
    return [
        Task(task_id=seed_task_id("deduction", 0), type="deduction", program=IDENTITY_PROGRAM,
             inputs=[IDENTITY_INPUT], outputs=[identity_output(IDENTITY_INPUT)]),
        Task(task_id=seed_task_id("abduction", 0), type="abduction", program=IDENTITY_PROGRAM,
             inputs=[IDENTITY_INPUT], outputs=[identity_output(IDENTITY_INPUT)]),
        Task(task_id=seed_task_id("induction", 0), type="induction", program=IDENTITY_PROGRAM,
             inputs=inputs, outputs=[identity_output(x) for x in inputs],
             message=IDENTITY_MESSAGE, n_shown=cfg.propose.shown),
    ]


def write_seed_file(run: Run, tasks: list[Task]) -> None:
    with run.writing():
        write_jsonl(run.seed_file, tasks)


def run(path: Path, cfg: Config, force: bool = False) -> Run:
    """Create the run directory with the identity seeds, all at once (see `create_run`)."""

    def fill(new: Run) -> None:
        write_jsonl(new.seed_file, seed_tasks(cfg))
        new.rebuild_metrics()

    return create_run(path, cfg, force=force, fill=fill)


# ----------------------------------------------------------------------------- the seeding phase


def seeding_target(cfg: Config) -> int:
    """Tasks per buffer the seeding phase fills to: ``seed.target``, else 4·B (the paper's)."""
    return cfg.seed.target if cfg.seed.target is not None else 4 * cfg.run.batch_size


def pending(run: Run) -> bool:
    """Whether the run still owes its seeding phase: it is on, no iteration has started (after
    that the seed buffer can no longer change), and a buffer is short of the target."""
    if not run.config.seed.grow or run.iterations():
        return False
    target = seeding_target(run.config)
    have = Counter(t.type for t in read_jsonl(run.seed_file, Task))
    return any(have[t] < target for t in TASK_TYPES)


def phase(run: Run, session: Any, progress: Callable[[int, int], None] | None = None) -> StageSummary:
    """The seeding phase of a new run, to :func:`seeding_target`: resumes where an earlier one
    stopped; RunError (one line, nothing lost) if the base model can't reach the target within
    ``seed.max_rounds`` rounds, unless ``seed.when_short`` is ``go_on`` (then ``reached`` is 0)."""
    cfg = run.config
    target = seeding_target(cfg)
    grown = grow(run, target, session.policy_for(1), session.sandbox(), cfg.seed.max_rounds, progress)
    if not grown["reached"] and cfg.seed.when_short == "stop":
        raise RunError(
            f"the seeding phase stopped after {grown['rounds']} rounds with buffers {grown['buffers']}, short of "
            f"{target} per type (seed.target): rerun to go on, or start the loop with what there is "
            "(--set seed.grow=false or seed.when_short=go_on), or lower --set seed.target=N"
        )
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
         progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The seeding phase's rounds: the base model proposes (no updates) and the sandbox validates,
    round after round, until every buffer holds `target` seed tasks or `max_rounds` is reached.
    Programs are stored without comments and top-level statements other than imports, functions
    and classes (globals, prints); a program seen before (normalised text; for induction, with the
    same inputs) is not added twice. `buffer/seed.jsonl` is rewritten atomically after each round,
    so a stop loses at most the round in progress."""
    from stages.method.parsers import strip_comments, strip_globals
    from stages.method.tasks import derive_seed, seeding_proposal_id, stage_rng
    from stages.model.turns import generate
    from stages.propose import build_queries, to_record
    from stages.rundir.buffers import group_by_type
    from stages.validate import validate_proposals

    cfg = run.config
    tasks = read_jsonl(run.seed_file, Task)
    seen = {_seed_key(t.type, t.program, t.inputs) for t in tasks}
    rounds = proposed = added = 0
    for rounds in range(1, max_rounds + 1):
        buffers = group_by_type(tasks)
        short = [t for t in TASK_TYPES if len(buffers[t]) < target]
        if not short:
            rounds -= 1
            break
        rng = stage_rng(cfg.run.seed, 0, f"seed-grow-{rounds}")
        queries = [q for q in build_queries(buffers, cfg, rng, 0) if q.type in short]
        gen = generate(policy, queries, cfg.propose, derive_seed(cfg.run.seed, 0, "seed-grow", rounds), progress)
        records = []
        for q, c in zip(queries, gen.completions, strict=True):
            rec = to_record(q, 0, c, cfg.propose.induction_inputs, cfg.reward.strict, policy.answer_prefix)
            if rec.program and rec.type != "induction" and cfg.validate_.strip_seed_comments:
                rec = rec.model_copy(update={"program": strip_globals(strip_comments(rec.program))})
            k = sum(r.type == q.type for r in records)
            records.append(rec.model_copy(update={"proposal_id": seeding_proposal_id(rounds, q.type, k)}))
        proposed += len(records)
        for v in validate_proposals(records, sandbox, cfg):
            have = sum(t.type == v.type for t in tasks)
            if v.task is None or have >= target or (key := _seed_key(v.type, v.task.program, v.task.inputs)) in seen:
                continue
            seen.add(key)
            tasks.append(v.task.model_copy(update={"task_id": seed_task_id(v.type, have), "iteration": 0}))
            added += 1
        write_seed_file(run, tasks)
    sizes = {t: len(v) for t, v in group_by_type(tasks).items()}
    return {"rounds": rounds, "proposed": proposed, "added": added, "buffers": sizes,
            "reached": all(n >= target for n in sizes.values())}


def _seed_key(task_type: str, program: str, inputs: list[str]) -> tuple[str, str, tuple[str, ...]]:
    return task_type, normalized(program), tuple(inputs) if task_type == "induction" else ()
