"""`azr seed`: create a run and write the seed tasks of the three buffers.

The paper seeds every buffer with the identity triplet (``def f(a): return a``, ``"Hello
world"``). The induction seed is the same program with N literal inputs of varied types and a
message; outputs are the inputs' values (computed by ``ast.literal_eval``, no code runs).
`--grow M` (the optional seeding phase) then lets the base model propose until each buffer holds M.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from stages.config import Config
from stages.records import Task
from stages.rundir import Run, create_run, write_jsonl

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
        Task(task_id="seed-deduction-0", type="deduction", program=IDENTITY_PROGRAM,
             inputs=[IDENTITY_INPUT], outputs=[identity_output(IDENTITY_INPUT)]),
        Task(task_id="seed-abduction-0", type="abduction", program=IDENTITY_PROGRAM,
             inputs=[IDENTITY_INPUT], outputs=[identity_output(IDENTITY_INPUT)]),
        Task(task_id="seed-induction-0", type="induction", program=IDENTITY_PROGRAM,
             inputs=inputs, outputs=[identity_output(x) for x in inputs],
             message=IDENTITY_MESSAGE, n_shown=cfg.propose.shown),
    ]


def write_seed_file(run: Run, tasks: list[Task]) -> None:
    tmp = run.seed_file.with_name(f".seed.jsonl.tmp-{os.getpid()}")
    write_jsonl(tmp, tasks)
    os.replace(tmp, run.seed_file)


def run(path: Path, cfg: Config, force: bool = False) -> Run:
    """Create the run directory and write the identity seeds."""
    new_run = create_run(path, cfg, force=force)
    write_seed_file(new_run, seed_tasks(cfg))
    new_run.rebuild_metrics()
    return new_run
