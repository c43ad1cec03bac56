"""The ids every record carries, the type and role fields records validate, seeds, and small
pure summaries.

The task types are the registry's (:mod:`stages.method.kinds`: the paper's deduction, abduction
and induction, plus any kind registered later); the roles are proposer and solver. Every id is
built by a function of this module, so that no other module knows an id's layout (and none slices
one).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator

from stages.method.kinds import KINDS, kind_of
from stages.method.kinds.base import ROLES as ROLES  # re-exported: records and stages read the roles here
from stages.method.kinds.base import Role as Role

TASK_TYPES = KINDS.keys()
"""The registered task types, in order: a live view of the registry (a kind registered later
shows up in every loop over it)."""


def check_type(task_type: str) -> str:
    """``task_type`` when it is a registered kind's name, else a ValueError naming the known ones."""
    return kind_of(task_type).name


TaskType = Annotated[str, AfterValidator(check_type)]
"""A record's ``type``: the name of a registered kind."""

Purpose = Literal["learnability", "train"]
"""Why a solver rollout exists: to estimate a new task's solve rate, or to train the solver."""


# ----------------------------------------------------------------------------- ids


def iteration_tag(n: int) -> str:
    """``000042``: the iteration as it appears in folder names and ids."""
    return f"{n:06d}"


def _short(task_type: str) -> str:
    return kind_of(task_type).short


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
