"""Small pure helpers shared by the stages: seeds, ids, summaries."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable
from typing import Any


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from the run seed and a path such as (iteration, stage): stable across
    processes and Python versions (unlike hash())."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def stage_rng(seed: int, iteration: int, stage: str) -> random.Random:
    return random.Random(derive_seed(seed, iteration, stage))


def proposal_id(iteration: int, task_type: str, k: int) -> str:
    return f"{iteration:06d}-{task_type[:3]}-{k:03d}"


def share(items: Iterable[bool]) -> float:
    items = list(items)
    return sum(items) / len(items) if items else 0.0


def counts(items: Iterable[Any]) -> dict[str, int]:
    return dict(sorted(Counter(str(x) for x in items).items()))
