"""The levers beyond the paper (issue #26) that act on tasks and rewards: pure functions over plain
values, each off by default in the config (the update's levers live in
:mod:`stages.training.losses`).

- difficulty band (``solve.difficulty_band``): keep the buffer tasks whose measured solve rate
  lies in [low, high]; a task never measured is kept.
- diversity (``reward.diversity_penalty``): the similarity of a proposal to what the proposer has
  seen, an n-gram Jaccard over normalized code (the AST dump, every name canonicalized).
- overlong (``update.overlong: penalize``): DAPO's soft length penalty over the last ``window``
  tokens of the generation budget.
- random-reward control (``reward.control: random``): seeded random rewards with the measured
  mean and spread of each batch.
"""

from __future__ import annotations

import ast
import contextlib
import math
import random
import re
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from stages.method.kinds import kind_of

CONTROL_MARKER = "RANDOM-REWARD CONTROL"
"""What a summary, the report and `azr status` show for a run with ``reward.control: random``."""

NGRAM = 4
"""Tokens per n-gram of the similarity."""

T = TypeVar("T")


def run_markers(control: str) -> list[str]:
    """The plain markers a run carries (``reward.control``): a control run says so everywhere."""
    if control == "random":
        return [f"{CONTROL_MARKER}: every reward is a seeded random one with the measured mean and spread "
                "of its (type, role) batch; a baseline for the method, not a result of it"]
    return []


# ----------------------------------------------------------------------------- difficulty band


def band_filter(pool: Sequence[T], rate_of: Mapping[str, float], band: tuple[float, float] | None,
                task_id: Any = lambda t: t.task_id) -> tuple[list[T], dict[str, int]]:
    """The tasks of ``pool`` whose measured solve rate lies in ``band`` (inclusive), and those never
    measured (kept), in their order; counts of the three kinds (``in``, ``unmeasured``, ``out``).
    ``band`` None keeps everything."""
    counts = {"in": 0, "unmeasured": 0, "out": 0}
    if band is None:
        return list(pool), counts
    low, high = band
    kept = []
    for t in pool:
        rate = rate_of.get(task_id(t))
        kind = "unmeasured" if rate is None else "in" if low <= rate <= high else "out"
        counts[kind] += 1
        if kind != "out":
            kept.append(t)
    return kept, counts


# ----------------------------------------------------------------------------- similarity


class _Canonical(ast.NodeTransformer):
    """Every identifier (variables, arguments, functions, classes, imported aliases) renamed to
    ``v0, v1, …`` in order of first appearance; attributes, keywords and constants stay."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _name(self, name: str) -> str:
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._name(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._name(node.arg)
        node.annotation = None
        return node

    def _named(self, node: Any) -> ast.AST:
        node.name = self._name(node.name)
        self.generic_visit(node)
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _named

    def visit_alias(self, node: ast.alias) -> ast.AST:
        node.asname = self._name(node.asname or node.name)
        return node


_TOKEN = re.compile(r"\w+|[^\w\s]")


def code_tokens(source: str) -> list[str]:
    """The tokens of ``source``'s normalized form: its AST dump (no field names, no positions; so
    comments, layout and docstring-free formatting drop out) with the names canonicalized. Text
    that does not parse falls back to its own tokens."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _TOKEN.findall(source)
    return _TOKEN.findall(ast.dump(_Canonical().visit(tree), annotate_fields=False))


def ngrams(tokens: Sequence[str], n: int = NGRAM) -> frozenset[tuple[str, ...]]:
    """The set of n-grams (one tuple of everything when shorter than n; empty for no tokens)."""
    if len(tokens) < n:
        return frozenset([tuple(tokens)]) if tokens else frozenset()
    return frozenset(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def jaccard(a: frozenset[Any], b: frozenset[Any]) -> float:
    """|a ∩ b| / |a ∪ b|; two empty sets are identical (1)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def literal_tokens(text: str) -> list[str]:
    """The tokens of an input's normalized form (``ast.unparse`` of the expression: one layout of
    quotes and spaces); text that does not parse falls back to its own tokens."""
    with contextlib.suppress(SyntaxError, ValueError, RecursionError, MemoryError):
        text = ast.unparse(ast.parse(text.strip(), mode="eval"))
    return _TOKEN.findall(text)


def fingerprint(task_type: str, program: str | None, inputs: Sequence[str]) -> frozenset[tuple[str, ...]]:
    """What a proposal of ``task_type`` is compared on: its program (deduction, abduction), or,
    for a kind whose program was given (induction), its inputs (each normalized)."""
    if not kind_of(task_type).proposes_program:
        return ngrams([tok for x in inputs for tok in (*literal_tokens(x), ";")])
    return ngrams(code_tokens(program or ""))


def max_similarity(target: frozenset[Any], others: Iterable[frozenset[Any]]) -> float:
    """The greatest Jaccard similarity of ``target`` to any of ``others`` (0 when there are none)."""
    return max((jaccard(target, o) for o in others), default=0.0)


# ----------------------------------------------------------------------------- overlong


def length_penalty(length: int, budget: int, window: int) -> float:
    """DAPO's soft overlong punishment of a response of ``length`` tokens under a ``budget`` of
    max_new_tokens: 0 up to budget − window, then falling linearly to −1 at the budget (a
    truncated response gets −1). ``window`` is capped at the budget."""
    window = max(1, min(window, budget))
    start = budget - window
    if length <= start:
        return 0.0
    if length >= budget:
        return -1.0
    return (start - length) / window


# ----------------------------------------------------------------------------- random control


def random_control(keys: Sequence[Hashable], rewards: Sequence[float], rng: random.Random) -> list[float]:
    """Random rewards with exactly the mean and (population) spread of each group's measured ones:
    per group, in the order of ``keys``, standard normal draws standardized to mean 0 and std 1,
    then scaled and shifted. A group whose rewards are all equal (one of one included) keeps them.
    Groups draw in sorted order of their key, so a group's values do not depend on the others'
    positions."""
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        members[k].append(i)
    out = list(map(float, rewards))
    for k in sorted(members, key=repr):
        idx = members[k]
        rs = [float(rewards[i]) for i in idx]
        mean = math.fsum(rs) / len(rs)
        std = math.sqrt(math.fsum((r - mean) ** 2 for r in rs) / len(rs))
        z = [rng.gauss(0.0, 1.0) for _ in idx]
        zm = math.fsum(z) / len(z)
        zs = math.sqrt(math.fsum((x - zm) ** 2 for x in z) / len(z))
        for i, x in zip(idx, z, strict=True):
            out[i] = mean if std == 0.0 or zs == 0.0 else mean + std * (x - zm) / zs
    return out
