"""Math suites: the paper's math benchmarks read from their published JSONL files, and
``math-synth``, questions generated from a seed, so that the cross-domain check runs anywhere.

Published layouts (one JSON object a line; the loader takes the first field present):
- the question: ``problem`` | ``question`` | ``Problem`` | ``Question``;
- the gold answer: ``answer`` | ``final_answer`` | ``Answer`` | ``gt`` | ``ground_truth`` (a list
  such as OlympiadBench's ``final_answer`` is joined with ", "); when none is there, the last
  ``\\boxed{}`` of ``solution`` (MATH's and AIME24's layout). Surrounding ``$`` are dropped.
- the id: ``unique_id`` | ``id`` | ``idx`` | ``problem_idx``; else ``<suite>/<line>``.

``math-synth`` (version :data:`SYNTH_VERSION`): :data:`SYNTH_ITEMS` questions from
``random.Random(f"math-synth/{version}/{seed}")`` (Python's Mersenne Twister, stable across
versions): arithmetic with fractions, order of operations, linear equations, 2x2 systems,
quadratics with integer roots, percentages, gcd/lcm, modular arithmetic, arithmetic series,
polynomial values. Every answer is exact (an integer or a reduced fraction ``p/q``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from stages.errors import EvalError
from stages.evaluation.mathcheck import last_boxed

SYNTH_VERSION = "v1"
SYNTH_ITEMS = 200
SYNTH_SEED = 0
MATH_TEMPLATE = "math-boxed/v1"


def math_prompt(problem: str) -> str:
    """The pinned math prompt (template ``math-boxed/v1``): the question, then the layout."""
    return "\n\n".join([
        problem.strip(),
        "First think step by step: write <think>, reason the problem through, then </think>. Then write "
        "<answer>, the final answer alone in \\boxed{}, then </answer>.",
    ])


def _first(row: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if row.get(name) not in (None, "", []):
            return row[name]
    return None


def _clean(answer: Any) -> str:
    if isinstance(answer, list):
        answer = ", ".join(_clean(a) for a in answer)
    s = str(answer).strip()
    if s.startswith("$") and s.endswith("$") and len(s) >= 2:
        s = s.strip("$").strip()
    return s


def published_rows(rows: list[dict[str, Any]], path: Path, suite: str) -> Iterator[tuple[str, str, str]]:
    """(item id, question, gold answer) for every row; EvalError('file:line: why')."""
    for i, row in enumerate(rows, start=1):
        question = _first(row, ("problem", "question", "Problem", "Question"))
        if not isinstance(question, str):
            raise EvalError(f"{path}:{i}: missing field 'problem' (or 'question'); expected the {suite} layout")
        answer = _first(row, ("answer", "final_answer", "Answer", "gt", "ground_truth"))
        if answer is None and isinstance(row.get("solution"), str):
            answer = last_boxed(row["solution"])
        if answer is None or not _clean(answer):
            raise EvalError(f"{path}:{i}: no gold answer (fields answer / final_answer, or a \\boxed{{}} in solution)")
        ident = _first(row, ("unique_id", "id", "idx", "problem_idx"))
        yield (f"{suite}/{ident}" if ident is not None else f"{suite}/{i}"), question, _clean(answer)


# ----------------------------------------------------------------------------- math-synth


def _frac(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _nz(r: random.Random, lo: int, hi: int) -> int:
    while True:
        v = r.randint(lo, hi)
        if v:
            return v


def _fractions(r: random.Random) -> tuple[str, str]:
    n1, d1, n2, d2 = r.randint(1, 9), r.randint(2, 9), r.randint(1, 9), r.randint(2, 9)
    a, b = Fraction(n1, d1), Fraction(n2, d2)
    op = r.choice("+-*")
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    sym = {"+": "+", "-": "-", "*": "\\times"}[op]
    return (f"Compute $\\frac{{{n1}}}{{{d1}}} {sym} \\frac{{{n2}}}{{{d2}}}$ "
            "and give the result as a fraction in lowest terms."), _frac(value)


def _order(r: random.Random) -> tuple[str, str]:
    a, b, c, d = (r.randint(2, 20) for _ in range(4))
    text = f"{a} + {b} \\times ({c} - {d}) - {a} \\times {d}"
    return f"Evaluate ${text}$.", str(a + b * (c - d) - a * d)


def _linear(r: random.Random) -> tuple[str, str]:
    a, b, c = _nz(r, -9, 9), r.randint(-20, 20), r.randint(-20, 20)
    return f"Solve for $x$: ${a}x + {b} = {c}$.".replace("+ -", "- "), _frac(Fraction(c - b, a))


def _system(r: random.Random) -> tuple[str, str]:
    x, y = r.randint(-9, 9), r.randint(-9, 9)
    while True:
        a, b, c, d = (_nz(r, -6, 6) for _ in range(4))
        if a * d - b * c:
            break
    e1, e2 = a * x + b * y, c * x + d * y
    eq = lambda p, q, s: f"{p}x + {q}y = {s}".replace("+ -", "- ")  # noqa: E731
    return f"Solve the system ${eq(a, b, e1)}$ and ${eq(c, d, e2)}$. What is $x + y$?", str(x + y)


def _quadratic(r: random.Random) -> tuple[str, str]:
    p, q = r.randint(-12, 12), r.randint(-12, 12)
    while p == q:
        q = r.randint(-12, 12)
    b, c = -(p + q), p * q
    poly = (f"x^2 + {b}x + {c}".replace("+ -", "- ").replace(" 1x", " x").replace(" + 0x", "")
            .replace(" + 0", ""))
    return f"The equation ${poly} = 0$ has two integer roots. What is the larger root?", str(max(p, q))


def _percent(r: random.Random) -> tuple[str, str]:
    p, n = r.choice([5, 10, 12, 15, 20, 25, 30, 40, 75, 125]), r.randint(2, 400)
    return f"What is {p}% of {n}?", _frac(Fraction(p * n, 100))


def _gcd_lcm(r: random.Random) -> tuple[str, str]:
    a, b = r.randint(6, 240), r.randint(6, 240)
    if r.random() < 0.5:
        return f"What is the greatest common divisor of {a} and {b}?", str(math.gcd(a, b))
    return f"What is the least common multiple of {a} and {b}?", str(math.lcm(a, b))


def _modular(r: random.Random) -> tuple[str, str]:
    a, e, m = r.randint(2, 30), r.randint(2, 60), r.randint(3, 23)
    return f"What is the remainder when ${a}^{{{e}}}$ is divided by {m}?", str(pow(a, e, m))


def _series(r: random.Random) -> tuple[str, str]:
    a, d, n = r.randint(-10, 20), _nz(r, -5, 9), r.randint(5, 40)
    return (f"An arithmetic sequence starts at {a} and each term is {d} more than the one before. "
            f"What is the sum of its first {n} terms?"), str(n * (2 * a + (n - 1) * d) // 2)


def _poly_value(r: random.Random) -> tuple[str, str]:
    cs = [_nz(r, -5, 5), *(r.randint(-5, 5) for _ in range(3))]
    x = r.randint(-4, 4)
    parts = [f"{c}x^{3 - i}" if i < 3 else f"{c}" for i, c in enumerate(cs) if c or i == 3]
    terms = " + ".join(parts).replace("x^1", "x").replace("+ -", "- ")
    value = sum(c * x ** (3 - i) for i, c in enumerate(cs))
    return f"Let $p(x) = {terms}$. What is $p({x})$?", str(value)


GENERATORS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "fractions": _fractions, "order": _order, "linear": _linear, "system": _system, "quadratic": _quadratic,
    "percent": _percent, "gcd-lcm": _gcd_lcm, "modular": _modular, "series": _series, "polynomial": _poly_value,
}


def synth_questions(seed: int = SYNTH_SEED, n: int = SYNTH_ITEMS,
                    version: str = SYNTH_VERSION) -> list[tuple[str, str, str]]:
    """(item id, question, exact answer) × n, the same for the same (version, seed) anywhere."""
    if version != SYNTH_VERSION:
        raise EvalError(f"math-synth {version}: this azr generates {SYNTH_VERSION} only")
    r = random.Random(f"math-synth/{version}/{seed}")
    names = list(GENERATORS)
    out = []
    for i in range(n):
        name = names[i % len(names)]
        question, answer = GENERATORS[name](r)
        out.append((f"math-synth/{version}/{seed}/{i}-{name}", question, answer))
    return out
