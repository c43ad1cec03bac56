"""Scoring held-out answers, as the run's solver is judged: the answer read from the last
``<answer>`` (the run's ``reward.format`` decides whether the tags are required), every check in
the sandbox.

Choices:
- Scoring reads the answer the way the solver stage does (the last ``<answer>`` and its block),
  but a missing ``<think>`` does not make an answer wrong: ``score`` counts correct answers;
  ``score_strict`` also needs the training format, and ``format_ok`` is reported on its own.
  For code generation without an ``<answer>`` tag, python blocks anywhere in the text count.
- Code-generation programs skip the static banned-import check the training tasks get: HumanEval's
  own tests import ``random`` and its solutions ``math``/``hashlib``, and pass@1 should not depend
  on training-time rules. The jail (namespaces, rlimits, no network, read-only files) still
  isolates every run. ``humaneval-io`` programs do get the task checks, as proposals do.
- Every item has a known-correct answer (:func:`reference_completion`): fed through the same
  scoring path, it must score 100%: the harness's self-check (LiveCodeBench publishes no
  solutions: its items have none).
- Suites with hidden tests (EvalPlus, LiveCodeBench) run the answer inside their harness script
  (:mod:`stages.evaluation.codebench`): correct = the script ends ok *and* printed its pass mark.
- Math answers (the last ``\\boxed{}``, see :mod:`stages.evaluation.mathcheck`) are compared with
  the gold answer in a separate checker process under a hard time limit.
- pass@k (:func:`pass_at_k`) is the unbiased estimate 1 - C(n-c, k) / C(n, k) per item, averaged.
- A completion cut at max_new_tokens whose tail repeats itself (:func:`repeated_tail`) is stopped
  there: it is scored as cut after the loop's second copy, and counted in ``repetitions``.
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from stages.evaluation.suites import Item
from stages.method.kinds import KINDS
from stages.method.parsers import bare_answer, extract_answer, extract_blocks, judge, scan_answer
from stages.method.tasks import share


def reference_completion(item: Item) -> str:
    """A known-correct answer in the asked layout (the harness self-check feeds these in)."""
    if item.kind == "math":
        return f"<think> known answer </think>\n<answer>\\boxed{{{item.output}}}</answer>"
    if item.kind in KINDS:
        kind = KINDS[item.kind]
        block = (kind.solver_block, kind.gold_answer(item_task(item)))
    else:
        block = ("python", item.solution)
    return f"<think> known answer </think>\n<answer>\n```{block[0]}\n{block[1]}\n```\n</answer>"


@dataclass(frozen=True)
class ItemTask:
    """An output- or input-prediction item as its task kind reads a task."""

    program: str
    inputs: list[str]
    outputs: list[str]
    message: str = ""
    n_shown: int = 0


def item_task(item: Item) -> ItemTask:
    return ItemTask(program=item.program, inputs=[item.input], outputs=[item.output])


def extract_code(text: str, entry_point: str) -> str | None:
    """The answer's code: the last python block defining ``entry_point``, else the last one; from
    the ``<answer>`` when there is one, else from the whole completion."""
    answer = extract_answer(text)
    blocks = extract_blocks(answer if answer is not None else text, "python")
    defines = re.compile(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)
    chosen = next((b for b in reversed(blocks) if defines.search(b)), blocks[-1] if blocks else None)
    return chosen or bare_answer(text, "python", entry_point)


def codegen_program(item: Item, code: str) -> str:
    """Prompt code + the answer + tests, as one script. An answer that does not define the entry
    function is taken as its body (the classic HumanEval completion). With a harness (hidden
    tests), the prompt code + the answer go into the harness as a string it runs."""
    if item.program and not re.search(rf"^(?:async\s+)?def\s+{re.escape(item.entry_point)}\s*\(", code, re.M):
        source = f"{item.program}{textwrap.indent(code, '    ')}\n"
    else:
        source = f"{item.program}\n\n{code}\n" if item.program else f"{code}\n"
    if item.harness:
        from stages.evaluation.codebench import CANDIDATE

        head, _, tail = item.harness.rpartition(CANDIDATE)  # the last one: the data (filled in first) comes before it
        return f"{head}{source!r}{tail}"
    return f"{source}\n{item.tests}"


# ----------------------------------------------------------------------------- repetition guard

REPEAT_MIN_CHARS = 200
REPEAT_MIN_COPIES = 4
REPEAT_MAX_PERIOD = 400


def repeated_tail(text: str) -> tuple[int, int] | None:
    """(start, period) when the text ends in one unit of at most REPEAT_MAX_PERIOD characters
    repeated at least REPEAT_MIN_COPIES times over at least REPEAT_MIN_CHARS characters; else None."""
    n = len(text)
    for period in range(1, min(REPEAT_MAX_PERIOD, n // REPEAT_MIN_COPIES) + 1):
        j = n - period - 1
        while j >= 0 and text[j] == text[j + period]:
            j -= 1
        span = n - (j + 1)
        if span >= max(REPEAT_MIN_CHARS, REPEAT_MIN_COPIES * period):
            return j + 1, period
    return None


def stop_repetition(text: str, finish: str) -> tuple[str, bool]:
    """A completion cut at max_new_tokens that loops: cut after the loop's second copy."""
    if finish != "length":
        return text, False
    found = repeated_tail(text)
    if found is None:
        return text, False
    start, period = found
    return text[: start + 2 * period], True


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one item with c correct of n samples: 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples (have {n})")
    if n - c < k:
        return 1.0
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


def score(items: list[Item], texts: list[str], sandbox: Any, sandbox_cfg: Any,
          strict: bool = True, checker: Any = None) -> list[dict[str, Any]]:
    """One result per item: prediction, correct, format, and the sandbox's word, in one batch.
    `strict=False` (a run with reward.format: blocks) reads the blocks without the tags. Math
    answers go to `checker` (a :class:`MathChecker`; one is started when None)."""
    from sandbox.result import Status
    from sandbox.tasks import check_answers
    from stages.evaluation.codebench import BASE_MARK, PASS_MARK
    from stages.evaluation.mathcheck import extract_math_answer, math_format_ok

    results: list[dict[str, Any]] = []
    answers: list[tuple[int, Any]] = []
    programs: list[tuple[int, str]] = []
    maths: list[tuple[int, str, str]] = []
    for k, (item, text) in enumerate(zip(items, texts, strict=True)):
        if item.kind == "math":
            prediction = extract_math_answer(text)
            format_ok, format_error = math_format_ok(text, strict)
            if prediction is not None:
                maths.append((k, item.output, prediction))
        elif item.kind == "codegen":
            prediction = extract_code(text, item.entry_point)
            # the layout of the solver's program answers: one python block
            format_error = judge(text, ("python",), scan_answer(text, strict), strict, bare_ok=True)
            format_ok = format_error is None
            if "```python" in (format_error or "") and bare_answer(text, "python", item.entry_point) is not None:
                # the program unfenced in <answer>, as the solver's induction answers may be (the
                # training parser takes it when it defines `f`; here the entry point has the
                # problem's name)
                format_ok, format_error = True, None
            if prediction is not None:
                programs.append((k, codegen_program(item, prediction)))
        else:
            kind = KINDS[item.kind]
            parsed = kind.parse_solver(text, strict)
            prediction, format_ok, format_error = parsed.prediction, parsed.format_ok, parsed.format_error
            if prediction is not None:
                answers.append((k, kind.answer_check(item_task(item), prediction)))
        results.append({
            "item_id": item.item_id, "kind": item.kind, "correct": False,
            "format_ok": format_ok, "format_error": format_error,
            "prediction": prediction, "status": "no_answer", "detail": "no answer block", "completion": text,
        })
        if item.harness and BASE_MARK in item.harness:
            results[-1]["base_correct"] = False
    if programs:
        for (k, _), res in zip(programs, sandbox.run_many([(p, None) for _, p in programs]), strict=True):
            ok = res.status is Status.ok
            harness = items[k].harness
            if harness:
                ok = ok and PASS_MARK in res.stdout
                if "base_correct" in results[k]:
                    results[k]["base_correct"] = BASE_MARK in res.stdout
            results[k].update(correct=ok, status=res.status.value,
                              detail=(res.error or res.detail or ("tests pass" if ok else "no pass mark"))[:300])
    if maths:
        from stages.evaluation.mathcheck import MathChecker

        own = checker is None
        if own:
            checker = MathChecker().__enter__()
        try:
            verdicts = checker.check_many([(gold, pred) for _, gold, pred in maths])
        finally:
            if own:
                checker.close()
        for (k, _, _), (ok, how) in zip(maths, verdicts, strict=True):
            results[k].update(correct=ok, status="ok" if ok else "wrong", detail=how[:300])
    if answers:
        checks = check_answers(sandbox, [a for _, a in answers], sandbox_cfg)
        for (k, _), c in zip(answers, checks, strict=True):
            results[k].update(correct=c.correct, status=c.status, detail=c.detail[:300])
    return results


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Scores over every sample (``score`` is then the mean pass@1), pass@k for every k up to the
    samples per item, the base-tests score where there is one, and the repetitions stopped."""
    kinds = sorted({r["kind"] for r in results})
    per_item: dict[str, list[bool]] = {}
    for r in results:
        per_item.setdefault(r["item_id"], []).append(bool(r["correct"]))
    n = min((len(v) for v in per_item.values()), default=0)
    out: dict[str, Any] = {
        "items": len(per_item),
        "samples": n,
        "score": share(r["correct"] for r in results),
        "score_strict": share(r["correct"] and r["format_ok"] for r in results),
        "format_ok": share(r["format_ok"] for r in results),
        "by_kind": {k: share(r["correct"] for r in results if r["kind"] == k) for k in kinds},
        "pass_at_k": {str(k): sum(pass_at_k(len(v), sum(v), k) for v in per_item.values()) / len(per_item)
                      for k in range(1, n + 1)} if per_item else {},
        "repetitions": sum(bool(r.get("repetition")) for r in results),
    }
    if any("base_correct" in r for r in results):
        out["score_base"] = share(r.get("base_correct", False) for r in results)
    return out
