"""Task validation and answer checking (the paper's rules for a valid task), batched across the pool.

A proposal becomes a task only if: the program passes the static checks and every input parses;
every run ends ok with a literal value whose repr fits the cap; and two more runs of every input,
on two other workers (three interpreters in all: three hash seeds, three address layouts, and one
of the three under a wall clock shifted by years, hours and seconds where libfaketime is
installed), give equal values. Answers are checked by value: deduction on the host by literal
parsing, abduction and induction by running programs in the sandbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Protocol

import pydantic

from sandbox.checks import check_input, check_program
from sandbox.config import SandboxConfig
from sandbox.pool import Job, Sandbox
from sandbox.result import ExecResult, Status
from sandbox.values import NotLiteral, canonical, check_deduction, parse_literal, same_literal

Reason = Literal[
    "parse", "no_entry", "banned", "error", "timeout", "memory", "output_limit",
    "nondeterministic", "output_not_literal", "output_too_long",
]
_STATUS_REASON: dict[Status, Reason] = {
    Status.error: "error",
    Status.timeout: "timeout",
    Status.memory: "memory",
    Status.output_limit: "output_limit",
    Status.output_too_long: "output_too_long",
    Status.output_not_literal: "output_not_literal",
    Status.killed: "error",
    Status.sandbox_error: "error",
}


class TaskValidation(pydantic.BaseModel):
    """Whether a proposed (program, inputs) became a task, and its gold outputs."""

    valid: bool
    """All checks passed."""
    reason: Reason | None = None
    """Why it was rejected (None when valid)."""
    outputs: list[str] = []
    """repr of f(*input) per input, in order (empty unless valid)."""
    detail: str = ""
    """A short human message."""


def _run_problem(res: ExecResult) -> tuple[Reason, str] | None:
    """Why a run does not yield a usable gold output, or None when it does."""
    if res.status is not Status.ok:
        what = res.error or res.detail or res.status.value
        return _STATUS_REASON.get(res.status, "error"), what
    try:
        canonical(parse_literal(res.value_repr or ""))
    except (NotLiteral, RecursionError):
        return "output_not_literal", f"{(res.value_repr or '')[:40]!r} does not read back as a literal"
    return None


def validate_tasks(sb: Sandbox, items: list[tuple[str, list[str]]], cfg: SandboxConfig | None = None) -> list[TaskValidation]:
    """Validate many proposals at once: static checks, a first run of every input across the
    pool, then a second run of every input of the survivors on a different worker."""
    cfg = cfg or sb.cfg
    verdicts: list[TaskValidation | None] = [None] * len(items)
    jobs: list[Job] = []
    owners: list[int] = []
    for k, (program, inputs) in enumerate(items):
        if not inputs:
            verdicts[k] = TaskValidation(valid=False, reason="parse", detail="no input given")
            continue
        check = check_program(program, cfg)
        bad_input = next((c for c in (check_input(i, cfg) for i in inputs) if not c.ok), None)
        if not check.ok or bad_input:
            failed = check if not check.ok else bad_input
            verdicts[k] = TaskValidation(valid=False, reason=failed.reason, detail=failed.detail)
            continue
        for text in inputs:
            jobs.append((program, text))
            owners.append(k)
    if jobs:
        sb.ensure_size(RUNS)
    first = sb.run_many(jobs)
    alive = _reject_failed(verdicts, owners, first, "")
    again = [j for j, k in enumerate(owners) if k in alive]
    places = [_other_workers(sb, first[j].worker) for j in again]
    later = sb.run_on([jobs[j] for j in again] * 2, [p[0] for p in places] + [p[1] for p in places])
    for n, runs in enumerate((later[:len(again)], later[len(again):]), start=2):
        alive = _reject_failed(verdicts, [owners[j] for j in again], runs, f"run {n}: ")
        for j, res in zip(again, runs, strict=True):
            k = owners[j]
            if k in alive and not same_literal(first[j].value_repr or "", res.value_repr or ""):
                alive.discard(k)
                verdicts[k] = TaskValidation(
                    valid=False, reason="nondeterministic",
                    detail=f"input {jobs[j][1][:40]!r} gave {first[j].value_repr[:40]} then "
                           f"{(res.value_repr or '')[:40]} (run {n})",
                )
    for k in alive:
        outputs = [first[j].value_repr or "" for j, owner in enumerate(owners) if owner == k]
        verdicts[k] = TaskValidation(valid=True, outputs=outputs, detail="valid")
    return [v if v is not None else TaskValidation(valid=False, reason="error", detail="not run") for v in verdicts]


RUNS = 3
"""Runs of every input in the determinism check, each on a different worker."""


def _other_workers(sb: Sandbox, first: int | None) -> tuple[list[int], list[int]]:
    """Where the second and the third run of a job that first ran on worker `first` may go: two
    disjoint sets of other workers (so three interpreters in all), one of which is a shifted-clock
    worker when the first was not. Disjoint sets let both runs go out in one batch, and this split
    keeps the load even (every worker takes about two thirds of a run per job)."""
    everyone = [w for w in range(sb.size) if w != first]
    shifted = sb.shifted_workers()
    plain = [w for w in everyone if w not in shifted]
    if shifted and first not in shifted and plain:
        return sorted(shifted - {first}), plain
    return everyone[0::2], everyone[1::2]


def _reject_failed(verdicts: list[TaskValidation | None], owners: list[int], results: list[ExecResult], prefix: str) -> set[int]:
    """Record the first failure of each proposal; return the proposals that are still alive."""
    alive = {k for k in owners if verdicts[k] is None}
    for k, res in zip(owners, results, strict=True):
        if k in alive and (problem := _run_problem(res)):
            alive.discard(k)
            verdicts[k] = TaskValidation(valid=False, reason=problem[0], detail=prefix + problem[1][:200])
    return alive


def validate_task(sb: Sandbox, program: str, inputs: list[str], cfg: SandboxConfig | None = None) -> TaskValidation:
    """Validate one proposal (see validate_tasks)."""
    return validate_tasks(sb, [(program, inputs)], cfg)[0]


# --- answers -------------------------------------------------------------------------------------
# Each answer says how it is checked: a verdict at once (by value on the host, or a refusal), or the
# sandbox runs (program, input, gold output) that decide it. check_answers batches the runs of
# every answer; a new kind of answer is a new class with a `plan`, and nothing here changes.

Run = tuple[str, str, str]
"""(program, input, gold output repr): one sandbox run an answer's verdict depends on."""


class AnswerCheck(pydantic.BaseModel):
    """Verdict on one answer."""

    correct: bool
    """Every check matched."""
    fraction: float = 0.0
    """Share of the checks that matched (induction: of the hidden pairs; else 0 or 1)."""
    status: str = "ok"
    """`ok` when the answer ran (or parsed), else why not: parse, banned, no_entry, or a run status."""
    detail: str = ""
    """A short human message."""


def _refused(static: Any) -> AnswerCheck:
    return AnswerCheck(correct=False, status=static.reason or "parse", detail=static.detail)


class CheckedAnswer(Protocol):
    def plan(self, cfg: SandboxConfig) -> AnswerCheck | list[Run]:
        """A verdict now, or the sandbox runs that decide it (all must match)."""
        ...


class DeductionAnswer(pydantic.BaseModel):
    """The solver predicted the output of a known program on a known input."""

    kind: Literal["deduction"] = "deduction"
    gold_output: str
    predicted: str

    def plan(self, cfg: SandboxConfig) -> AnswerCheck | list[Run]:
        """Compared by value on the host: nothing runs."""
        ok = check_deduction(self.gold_output, self.predicted)
        return AnswerCheck(correct=ok, fraction=float(ok), detail="value matches" if ok else "value differs")


class AbductionAnswer(pydantic.BaseModel):
    """The solver proposed an input that should make `program` return the gold output."""

    kind: Literal["abduction"] = "abduction"
    program: str
    gold_output: str
    proposed_input: str

    def plan(self, cfg: SandboxConfig) -> AnswerCheck | list[Run]:
        """The program was validated as a task; the solver's input is what gets checked, then run."""
        static = check_input(self.proposed_input, cfg)
        return _refused(static) if not static.ok else [(self.program, self.proposed_input, self.gold_output)]


class InductionAnswer(pydantic.BaseModel):
    """The solver wrote a program that should map each hidden input to its hidden output."""

    kind: Literal["induction"] = "induction"
    program: str
    inputs: list[str]
    outputs: list[str]

    def plan(self, cfg: SandboxConfig) -> AnswerCheck | list[Run]:
        """The solver's program is checked statically, then run on every hidden input."""
        if len(self.inputs) != len(self.outputs):
            return AnswerCheck(correct=False, status="parse", detail="hidden inputs and outputs differ in number")
        static = check_program(self.program, cfg)
        if not static.ok:
            return _refused(static)
        if not self.inputs:
            return AnswerCheck(correct=False, status="parse", detail="nothing to check against")
        return [(self.program, x, y) for x, y in zip(self.inputs, self.outputs, strict=True)]


Answer = Annotated[DeductionAnswer | AbductionAnswer | InductionAnswer, pydantic.Field(discriminator="kind")]


def check_answers(sb: Sandbox, answers: Sequence[CheckedAnswer], cfg: SandboxConfig | None = None) -> list[AnswerCheck]:
    """Check many answers (of any kinds) with one batch of sandbox runs."""
    cfg = cfg or sb.cfg
    checks: list[AnswerCheck | None] = [None] * len(answers)
    runs: list[Run] = []
    owners: list[int] = []
    for k, ans in enumerate(answers):
        plan = ans.plan(cfg)
        if isinstance(plan, AnswerCheck):
            checks[k] = plan
            continue
        runs += plan
        owners += [k] * len(plan)
    results = sb.run_many([(program, text) for program, text, _ in runs]) if runs else []
    per: dict[int, list[tuple[ExecResult, bool]]] = {}
    for k, res, (_, _, gold) in zip(owners, results, runs, strict=True):
        hit = res.status is Status.ok and same_literal(gold, res.value_repr or "")
        per.setdefault(k, []).append((res, hit))
    for k, done in per.items():
        hits = sum(hit for _, hit in done)
        bad = next((r for r, _ in done if r.status is not Status.ok), None)
        checks[k] = AnswerCheck(
            correct=hits == len(done),
            fraction=hits / len(done),
            status=bad.status.value if bad else "ok",
            detail=(bad.error or bad.detail or "") if bad else f"{hits}/{len(done)} match",
        )
    return [c if c is not None else AnswerCheck(correct=False, status="error", detail="not run") for c in checks]


def check_abduction(sb: Sandbox, program: str, gold_output_repr: str, proposed_input: str) -> bool:
    """Abduction: f(*proposed_input) equals the gold output by value."""
    ans = AbductionAnswer(program=program, gold_output=gold_output_repr, proposed_input=proposed_input)
    return check_answers(sb, [ans])[0].correct


def check_induction(sb: Sandbox, proposed_program: str, hidden_inputs: list[str], hidden_outputs: list[str], cfg: SandboxConfig | None = None) -> tuple[bool, float]:
    """Induction: the proposed program maps every hidden input to its output; also the fraction."""
    ans = InductionAnswer(program=proposed_program, inputs=hidden_inputs, outputs=hidden_outputs)
    check = check_answers(sb, [ans], cfg)[0]
    return check.correct, check.fraction
