"""Comparing values by value, on the host, from their text: safe literal parsing only.

Choices (one place, so every task type agrees):
- types must match at every level: `1` != `1.0` != `True`, `[1]` != `(1,)` (a solver that answers
  `2` for `4 / 2` has missed what `/` returns);
- floats compare by value, so `-0.0` equals `0.0` (a sign artefact, not a different answer), and
  NaN equals NaN (so a value equals itself); NaN and inf never reach a gold output anyway, since
  their reprs are not literals;
- sets and dicts compare without regard to order (their repr order depends on the hash seed).
"""

from __future__ import annotations

import ast
from typing import Any

_ATOMS = (type(None), bool, int, str, bytes)
MAX_ANSWER_CHARS = 100_000


class NotLiteral(ValueError):
    """Text that is not a Python literal."""


def parse_literal(text: str, max_chars: int = MAX_ANSWER_CHARS) -> Any:
    """ast.literal_eval with a size cap and every failure turned into NotLiteral."""
    text = text.strip()
    if len(text) > max_chars or "\x00" in text:
        raise NotLiteral("too long or contains a null byte")
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise NotLiteral(str(exc)[:80]) from None


def _float_key(x: float) -> Any:
    return "nan" if x != x else x + 0.0  # x + 0.0 turns -0.0 into 0.0


def canonical(value: Any) -> Any:
    """A hashable, type-tagged form of a literal value; equal forms mean equal values."""
    kind = type(value)
    if kind in _ATOMS:
        return (kind.__name__, value)
    if kind is float:
        return ("float", _float_key(value))
    if kind is complex:
        return ("complex", _float_key(value.real), _float_key(value.imag))
    if kind in (list, tuple):
        return (kind.__name__, tuple(canonical(v) for v in value))
    if kind in (set, frozenset):
        return (kind.__name__, frozenset(canonical(v) for v in value))
    if kind is dict:
        return ("dict", frozenset((canonical(k), canonical(v)) for k, v in value.items()))
    raise NotLiteral(f"not a literal type: {kind.__name__}")


def same_value(a: Any, b: Any) -> bool:
    """a equals b under the rules above."""
    try:
        return canonical(a) == canonical(b)
    except (NotLiteral, RecursionError):
        return False


def same_literal(a_text: str, b_text: str) -> bool:
    """Two literal texts denote the same value; False when either is not a literal."""
    try:
        return same_value(parse_literal(a_text), parse_literal(b_text))
    except NotLiteral:
        return False


def check_deduction(gold_output_repr: str, predicted: str) -> bool:
    """Deduction: the predicted output text denotes the gold output's value."""
    return same_literal(gold_output_repr, predicted)
