"""Task buffers: derived, never stored. The buffer at iteration N is the seed tasks plus every
valid task of iterations 1..N (``iters/≤N/validate/tasks.jsonl``), per type, capped.

The seed tasks are themselves derived once the seeding phase has run a round: ``seed/base.jsonl``
(the identity triplet, or what an older run's seed file held) plus the tasks each complete round
added (``seed/round-K/tasks.jsonl``); ``buffer/seed.jsonl`` is the same list, written out.

Sampling helpers are pure: they take a ``random.Random`` so a stage's choices follow its seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from stages.errors import RunError
from stages.method.kinds import KINDS
from stages.rundir.jsonl import read_jsonl
from stages.rundir.layout import TASKS
from stages.rundir.records import Task
from stages.rundir.run import Run

Buffers = dict[str, list[Task]]
"""Task type -> its tasks, one entry per registered kind."""


SEED_BASE = "base.jsonl"
"""In ``seed/``: the seed tasks before the seeding phase's first round."""


def seed_buffer(run: Run) -> list[Task]:
    """The seed tasks: ``seed/base.jsonl`` + the tasks of complete seeding rounds 1..k, in order;
    ``buffer/seed.jsonl`` before the phase has begun (or on a run from before rounds were kept).
    A round whose folder is complete counts even if the seed file was not rewritten after it."""
    base = run.seed_dir / SEED_BASE
    rounds = run.seed_rounds()
    if not base.is_file():
        if rounds:
            raise RunError(f"{base}: missing while {rounds} seeding round(s) are complete; the run is damaged")
        return read_jsonl(run.seed_file, Task)
    tasks = read_jsonl(base, Task)
    for k in range(1, rounds + 1):
        tasks.extend(run.round_records(k, TASKS))
    return tasks


def load_buffers(run: Run, upto: int) -> Buffers:
    """Seeds + valid tasks of iterations 1..upto, oldest first, each type capped."""
    tasks: list[Task] = []
    tasks.extend(seed_buffer(run))
    for n in range(1, upto + 1):
        if run.is_done(n, "validate"):
            tasks.extend(run.records(n, TASKS))
    return cap_buffers(group_by_type(tasks), run.config.validate_.buffer_cap)


def group_by_type(tasks: Sequence[Task]) -> Buffers:
    out: Buffers = {t: [] for t in KINDS}
    for task in tasks:
        out[task.type].append(task)
    return out


def cap_buffers(buffers: Buffers, cap: int) -> Buffers:
    """Keep at most `cap` per type: seeds always stay, the oldest proposed tasks fall out first."""
    out: Buffers = {}
    for t, items in buffers.items():
        if len(items) <= cap:
            out[t] = list(items)
            continue
        seeds = [x for x in items if x.iteration == 0]
        rest = [x for x in items if x.iteration != 0]
        keep = max(cap - len(seeds), 0)
        out[t] = seeds + (rest[-keep:] if keep else [])
    return out


def solver_batch(new: Sequence[Task], pool: Sequence[Task], size: int, rng: random.Random) -> list[Task]:
    """The solver's training batch of one type: this iteration's new tasks first (at most
    `size`), then filled with uniform draws from the whole buffer (with replacement when the
    buffer is smaller than what is missing)."""
    batch = list(new[:size])
    missing = size - len(batch)
    if missing > 0 and pool:
        if len(pool) >= missing:
            batch.extend(rng.sample(list(pool), missing))
        else:
            batch.extend(rng.choice(list(pool)) for _ in range(missing))
    return batch
