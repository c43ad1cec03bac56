"""`azr seed`: create a run and write the seed tasks of the three buffers.

The paper seeds every buffer with the identity triplet (``def f(a): return a``, ``"Hello
world"``). The induction seed is the same program with N literal inputs of varied types and a
message; outputs are the inputs' values (computed by ``ast.literal_eval``, no code runs).
`--grow M` (the optional seeding phase) then lets the base model propose until each buffer holds M.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stages.config.schema import Config
from stages.method.tasks import TASK_TYPES, seed_task_id
from stages.rundir.jsonl import read_jsonl, write_jsonl
from stages.rundir.manifest import create_run
from stages.rundir.records import Task
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


def grow(run: Run, target: int, policy: Any, sandbox: Any, max_rounds: int = 20,
         progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The optional seeding phase: the base model proposes (no updates) and the sandbox validates,
    round after round, until every buffer holds `target` seed tasks or `max_rounds` is reached.
    Programs are stored with their comments stripped. `buffer/seed.jsonl` is rewritten atomically
    after each round, so a stop loses at most the round in progress."""
    from stages.method.parsers import strip_comments
    from stages.method.tasks import derive_seed, seeding_proposal_id, stage_rng
    from stages.model.turns import generate
    from stages.propose import build_queries, to_record
    from stages.rundir.buffers import group_by_type
    from stages.validate import validate_proposals

    cfg = run.config
    tasks = read_jsonl(run.seed_file, Task)
    rounds = proposed = 0
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
            rec = to_record(q, 0, c, cfg.propose.induction_inputs, cfg.reward.strict)
            if rec.program and rec.type != "induction" and cfg.validate_.strip_seed_comments:
                rec = rec.model_copy(update={"program": strip_comments(rec.program)})
            k = sum(r.type == q.type for r in records)
            records.append(rec.model_copy(update={"proposal_id": seeding_proposal_id(rounds, q.type, k)}))
        proposed += len(records)
        for v in validate_proposals(records, sandbox, cfg):
            have = sum(t.type == v.type for t in tasks)
            if v.task is not None and have < target:
                tasks.append(v.task.model_copy(update={"task_id": seed_task_id(v.type, have), "iteration": 0}))
        write_seed_file(run, tasks)
    sizes = {t: len(v) for t, v in group_by_type(tasks).items()}
    return {"rounds": rounds, "proposed": proposed, "buffers": sizes,
            "reached": all(n >= target for n in sizes.values())}
