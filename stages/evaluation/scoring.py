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
  scoring path, it must score 100%: the harness's self-check.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from stages.evaluation.suites import Item
from stages.method.parsers import extract_answer, extract_blocks, format_verdict, parse_solver
from stages.method.tasks import share


def reference_completion(item: Item) -> str:
    """A known-correct answer in the asked layout (the harness self-check feeds these in)."""
    block = {"codegen": ("python", item.solution), "deduction": ("output", item.output),
             "abduction": ("input", item.input)}[item.kind]
    return f"<think> known answer </think>\n<answer>\n```{block[0]}\n{block[1]}\n```\n</answer>"


def extract_code(text: str, entry_point: str) -> str | None:
    """The answer's code: the last python block defining ``entry_point``, else the last one; from
    the ``<answer>`` when there is one, else from the whole completion."""
    answer = extract_answer(text)
    blocks = extract_blocks(answer if answer is not None else text, "python")
    defines = re.compile(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)
    chosen = next((b for b in reversed(blocks) if defines.search(b)), blocks[-1] if blocks else None)
    return chosen or None


def codegen_program(item: Item, code: str) -> str:
    """Prompt code + the answer + tests, as one script. An answer that does not define the entry
    function is taken as its body (the classic HumanEval completion)."""
    if item.program and not re.search(rf"^(?:async\s+)?def\s+{re.escape(item.entry_point)}\s*\(", code, re.M):
        return f"{item.program}{textwrap.indent(code, '    ')}\n\n{item.tests}"
    return f"{item.program}\n\n{code}\n\n{item.tests}"


def score(items: list[Item], texts: list[str], sandbox: Any, sandbox_cfg: Any,
          strict: bool = True) -> list[dict[str, Any]]:
    """One result per item: prediction, correct, format, and the sandbox's word, in one batch.
    `strict=False` (a run with reward.format: blocks) reads the blocks without the tags."""
    from sandbox.result import Status
    from sandbox.tasks import AbductionAnswer, DeductionAnswer, check_answers

    results: list[dict[str, Any]] = []
    answers: list[tuple[int, Any]] = []
    programs: list[tuple[int, str]] = []
    for k, (item, text) in enumerate(zip(items, texts, strict=True)):
        if item.kind == "codegen":
            prediction = extract_code(text, item.entry_point)
            verdict = format_verdict(text, "solver", "induction", strict=strict)  # the same layout: one python block
            format_ok, format_error = verdict.ok, verdict.error
            if prediction is not None:
                programs.append((k, codegen_program(item, prediction)))
        else:
            parsed = parse_solver(text, item.kind, strict)
            prediction, format_ok, format_error = parsed.prediction, parsed.format_ok, parsed.format_error
            if prediction is not None:
                answers.append((k, DeductionAnswer(gold_output=item.output, predicted=prediction)
                                if item.kind == "deduction" else
                                AbductionAnswer(program=item.program, gold_output=item.output,
                                                proposed_input=prediction)))
        results.append({
            "item_id": item.item_id, "kind": item.kind, "correct": False,
            "format_ok": format_ok, "format_error": format_error,
            "prediction": prediction, "status": "no_answer", "detail": "no answer block", "completion": text,
        })
    if programs:
        for (k, _), res in zip(programs, sandbox.run_many([(p, None) for _, p in programs]), strict=True):
            results[k].update(correct=res.status is Status.ok, status=res.status.value,
                              detail=(res.error or res.detail or "tests pass")[:300])
    if answers:
        checks = check_answers(sandbox, [a for _, a in answers], sandbox_cfg)
        for (k, _), c in zip(answers, checks, strict=True):
            results[k].update(correct=c.correct, status=c.status, detail=c.detail[:300])
    return results


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = sorted({r["kind"] for r in results})
    return {
        "items": len(results),
        "score": share(r["correct"] for r in results),
        "score_strict": share(r["correct"] and r["format_ok"] for r in results),
        "format_ok": share(r["format_ok"] for r in results),
        "by_kind": {k: share(r["correct"] for r in results if r["kind"] == k) for k in kinds},
    }
