"""The kinds of task and role, the ids every record carries, seeds, and small pure summaries.

Declared once here: the three task types (the paper's deduction, abduction and induction) and the
two roles (proposer, solver). Every id is built by a function of this module, so that no other
module knows an id's layout (and none slices one).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal, get_args

TaskType = Literal["deduction", "abduction", "induction"]
TASK_TYPES: tuple[TaskType, ...] = get_args(TaskType)
Role = Literal["proposer", "solver"]
ROLES: tuple[Role, ...] = get_args(Role)
Purpose = Literal["learnability", "train"]
"""Why a solver rollout exists: to estimate a new task's solve rate, or to train the solver."""


def check_type(task_type: str) -> None:
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}: expected one of {', '.join(TASK_TYPES)}")


# ----------------------------------------------------------------------------- ids


def iteration_tag(n: int) -> str:
    """``000042``: the iteration as it appears in folder names and ids."""
    return f"{n:06d}"


def _short(task_type: str) -> str:
    return task_type[:3]


def proposal_id(iteration: int, task_type: str, k: int) -> str:
    """The k-th proposal of a type in an iteration: ``000001-ded-003``."""
    return f"{iteration_tag(iteration)}-{_short(task_type)}-{k:03d}"


def seeding_proposal_id(round_: int, task_type: str, k: int) -> str:
    """A proposal of the seeding phase (before iteration 1): ``seed-r002-abd-001``."""
    return f"seed-r{round_:03d}-{_short(task_type)}-{k:03d}"


def task_id(proposal: str) -> str:
    """The task a valid proposal becomes: ``t000001-ded-003``."""
    return f"t{proposal}"


def seed_task_id(task_type: str, k: int) -> str:
    """The k-th seed task of a buffer: ``seed-deduction-0``."""
    return f"seed-{task_type}-{k}"


def learnability_rollout_id(task: str, j: int) -> str:
    """The j-th of the n learnability rollouts on a new task: ``t000001-ded-003-r2``."""
    return f"{task}-r{j}"


def train_rollout_id(iteration: int, task_type: str, k: int) -> str:
    """The k-th member of the solver's training batch of a type: ``000001-train-ded-003``."""
    return f"{iteration_tag(iteration)}-train-{_short(task_type)}-{k:03d}"


# ----------------------------------------------------------------------------- seeds


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from the run seed and a path such as (iteration, stage): stable across
    processes and Python versions (unlike hash())."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def stage_rng(seed: int, iteration: int, stage: str) -> random.Random:
    return random.Random(derive_seed(seed, iteration, stage))


# ----------------------------------------------------------------------------- summaries


def share(items: Iterable[bool]) -> float:
    items = list(items)
    return sum(items) / len(items) if items else 0.0


def counts(items: Iterable[Any]) -> dict[str, int]:
    return dict(sorted(Counter(str(x) for x in items).items()))
