"""`azr solve`: the solver answers tasks; the sandbox checks every answer.

Two kinds of rollouts, in one generation call:
- learnability: n rollouts on every task this iteration made valid; their mean accuracy r̄ gives
  the proposer's reward (1 − r̄) in `azr reward`;
- train: the solver's training batch, B tasks per type: this iteration's new tasks first, then
  uniform draws from the whole buffer.
deduction answers are compared on the host by safe literal parsing; abduction and induction
answers run in the sandbox.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stages.buffer import load_buffers, solver_batch
from stages.chat import completion_fields, generate
from stages.common import derive_seed, share, stage_rng
from stages.config import TASK_TYPES, Config
from stages.parsers import parse_solver
from stages.prompts import Turn, show_turns, solver_prompt, solver_turns
from stages.records import Rollout, Task
from stages.rundir import Run


@dataclass(frozen=True)
class Job:
    rollout_id: str
    task: Task
    purpose: str
    turns: list[Turn]

    @property
    def prompt(self) -> str:
        return show_turns(self.turns)


def task_turns(task: Task, demonstrations: bool = False) -> list[Turn]:
    """What the solver sees: induction shows only the first n_shown pairs and the message."""
    if task.type == "induction":
        k = task.n_shown
        shown: dict[str, Any] = {"inputs": task.inputs[:k], "outputs": task.outputs[:k], "message": task.message}
    else:
        shown = {"program": task.program, "inputs": task.inputs, "outputs": task.outputs}
    if demonstrations:
        return solver_turns(task.type, **shown)
    return [("user", solver_prompt(task.type, **shown))]


def build_jobs(
    new: list[Task], buffers: dict[str, list[Task]], cfg: Config, rng: random.Random, iteration: int
) -> list[Job]:
    demos = cfg.solve.demonstrations
    jobs = [
        Job(f"{t.task_id}-r{j}", t, "learnability", task_turns(t, demos))
        for t in new
        for j in range(cfg.solve.rollouts)
    ]
    for typ in TASK_TYPES:
        batch = solver_batch([t for t in new if t.type == typ], buffers[typ], cfg.run.batch_size, rng)
        jobs += [
            Job(f"{iteration:06d}-train-{typ[:3]}-{k:03d}", t, "train", task_turns(t, demos))
            for k, t in enumerate(batch)
        ]
    return jobs


def answer_item(task: Task, prediction: str) -> Any:
    """The sandbox's description of one answer check."""
    from sandbox.tasks import AbductionAnswer, DeductionAnswer, InductionAnswer

    if task.type == "deduction":
        return DeductionAnswer(gold_output=task.outputs[0], predicted=prediction)
    if task.type == "abduction":
        return AbductionAnswer(program=task.program, gold_output=task.outputs[0], proposed_input=prediction)
    k = task.n_shown
    return InductionAnswer(program=prediction, inputs=task.inputs[k:], outputs=task.outputs[k:])


def check_answers(jobs: list[Job], predictions: list[str | None], sandbox: Any, cfg: Config) -> list[Any]:
    """One verdict per job (None where there is no prediction to check)."""
    from sandbox.tasks import check_answers as sandbox_check

    where = [i for i, p in enumerate(predictions) if p is not None]
    items = [answer_item(jobs[i].task, predictions[i]) for i in where]  # type: ignore[arg-type]
    verdicts: list[Any] = [None] * len(jobs)
    for i, v in zip(where, sandbox_check(sandbox, items, cfg.sandbox), strict=True):
        verdicts[i] = v
    return verdicts


def to_rollout(job: Job, completion: Any, parsed: Any, verdict: Any) -> Rollout:
    return Rollout(
        rollout_id=job.rollout_id,
        task_id=job.task.task_id,
        type=job.task.type,
        purpose=job.purpose,
        prompt=job.prompt,
        prediction=parsed.prediction,
        format_ok=parsed.format_ok,
        format_error=parsed.format_error,
        correct=bool(parsed.format_ok and verdict is not None and verdict.correct),
        fraction=float(verdict.fraction) if verdict is not None else 0.0,
        check_detail=verdict.detail if verdict is not None else "",
        **completion_fields(completion),
    )


def summarize(rollouts: list[Rollout], gen: Any, check_s: float) -> dict[str, Any]:
    m: dict[str, Any] = {"rollouts": len(rollouts)}
    for purpose in ("learnability", "train"):
        rs = [r for r in rollouts if r.purpose == purpose]
        m[f"{purpose}/count"] = len(rs)
        for t in TASK_TYPES:
            sub = [r for r in rs if r.type == t]
            if sub:
                m[f"{purpose}/accuracy/{t}"] = share(r.correct for r in sub)
                m[f"{purpose}/format_ok/{t}"] = share(r.format_ok for r in sub)
    m.update(
        tokens=gen.tokens,
        tokens_per_s=round(gen.tokens_per_s, 2),
        generate_s=round(gen.seconds, 3),
        check_s=round(check_s, 3),
    )
    return {"count": len(rollouts), "metrics": m}


def run(
    run: Run,
    n: int,
    policy: Any,
    sandbox: Any,
    *,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write iters/N/solve/: rollouts.jsonl + summary.json."""
    started = time.perf_counter()
    cfg, s = run.config, run.config.solve
    new = run.read(n, "validate", "tasks.jsonl", Task)
    jobs = build_jobs(new, load_buffers(run, n), cfg, stage_rng(cfg.run.seed, n, "solve"), n)
    gen = generate(policy, [j.turns for j in jobs], s, derive_seed(cfg.run.seed, n, "solve", "gen"), progress)
    strict = cfg.reward.format == "strict"
    parsed = [parse_solver(c.text, j.task.type, strict) for j, c in zip(jobs, gen.completions, strict=True)]
    start = time.perf_counter()
    verdicts = check_answers(jobs, [p.prediction if p.format_ok else None for p in parsed], sandbox, cfg)
    check_s = time.perf_counter() - start
    rollouts = [to_rollout(*x) for x in zip(jobs, gen.completions, parsed, verdicts, strict=True)]
    summary = summarize(rollouts, gen, check_s)
    run.write_stage(n, "solve", {"rollouts.jsonl": rollouts}, summary, force=force, started=started)
    return summary
