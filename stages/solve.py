"""`azr solve`: the solver answers tasks; the sandbox checks every answer.

Two kinds of rollouts, in one generation call:
- learnability: n rollouts on every task this iteration made valid; their mean accuracy r̄ gives
  the proposer's reward (1 − r̄) in `azr reward`;
- train: the solver's training batch, B tasks per type: this iteration's new tasks first, then
  uniform draws from the whole buffer (with ``solve.difficulty_band``, from the buffer tasks whose
  measured solve rate lies in the band, and those never measured).
Each type's kind says what its solver is shown and how an answer is checked: deduction answers
are compared on the host by safe literal parsing; abduction and induction answers run in the
sandbox.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from stages.config.schema import Config
from stages.method.kinds import KINDS
from stages.method.levers import band_filter
from stages.method.prompts import Turn
from stages.method.tasks import (
    derive_seed,
    learnability_rollout_id,
    share,
    stage_rng,
    task_id,
    train_rollout_id,
)
from stages.model.engines.base import Progress
from stages.model.turns import Query, completion_fields, generate, prompt_tokens
from stages.rundir.buffers import Buffers, load_buffers, solver_batch
from stages.rundir.layout import ROLLOUTS, SAMPLES, TASKS
from stages.rundir.records import Rollout, StageSummary, Task
from stages.rundir.run import Run
from stages.session import Session

if TYPE_CHECKING:
    from sandbox.pool import Sandbox
    from sandbox.tasks import AnswerCheck


def task_turns(task: Task, demonstrations: bool = False) -> list[Turn]:
    """What the solver sees, as its kind shows it (induction: only the first n_shown pairs and the
    message), after the kind's worked example with ``demonstrations``."""
    kind = KINDS[task.type]
    shown = kind.shown(task)
    return kind.solver_turns(**shown) if demonstrations else [("user", kind.solver_prompt(**shown))]


def solver_query(rollout_id: str, task: Task, purpose: str, demonstrations: bool = False) -> Query:
    return Query(rollout_id, task.type, task_turns(task, demonstrations), task=task, purpose=purpose)


def build_queries(
    new: list[Task], buffers: dict[str, list[Task]], cfg: Config, rng: random.Random, iteration: int
) -> list[Query]:
    """n learnability rollouts per new task, then each type's training batch."""
    demos = cfg.solve.demonstrations
    queries = [
        solver_query(learnability_rollout_id(t.task_id, j), t, "learnability", demos)
        for t in new
        for j in range(cfg.solve.rollouts)
    ]
    for typ in KINDS:
        batch = solver_batch([t for t in new if t.type == typ], buffers.get(typ, []), cfg.run.batch_size, rng)
        queries += [solver_query(train_rollout_id(iteration, typ, k), t, "train", demos) for k, t in enumerate(batch)]
    return queries


def measured_rates(run: Run, n: int) -> dict[str, float]:
    """task_id -> solve rate measured before iteration n: the mean accuracy of the task's
    learnability rollouts, as the reward stages of iterations 1..n−1 recorded it (their proposer
    samples' ``solve_rate``; a far smaller file than the rollouts)."""
    out: dict[str, float] = {}
    for k in range(1, n):
        if run.is_done(k, "reward"):
            for s in run.records(k, SAMPLES):
                if s.role == "proposer" and s.solve_rate is not None:
                    out[task_id(s.sample_id)] = s.solve_rate
    return out


def band_buffers(buffers: Buffers, rates: dict[str, float], band: tuple[float, float] | None
                 ) -> tuple[Buffers, dict[str, int]]:
    """Each type's buffer cut to the difficulty band (unmeasured tasks kept), and the summary's
    counts over the three types: ``band/in``, ``band/unmeasured``, ``band/out``."""
    out: Buffers = {}
    counts = {"band/in": 0, "band/unmeasured": 0, "band/out": 0}
    for typ, pool in buffers.items():
        out[typ], c = band_filter(pool, rates, band)
        for kind, v in c.items():
            counts[f"band/{kind}"] += v
    return out, counts


def judge_answers(queries: list[Query], predictions: list[str | None], sandbox: Sandbox, cfg: Config
                  ) -> list[AnswerCheck | None]:
    """One verdict per query (None where there is no prediction to check)."""
    from sandbox.tasks import check_answers

    where = [i for i, p in enumerate(predictions) if p is not None]
    items = [KINDS[queries[i].type].answer_check(queries[i].task, predictions[i]) for i in where]
    verdicts: list[AnswerCheck | None] = [None] * len(queries)
    for i, v in zip(where, check_answers(sandbox, items, cfg.sandbox), strict=True):
        verdicts[i] = v
    return verdicts


def to_rollout(query: Query, completion: Any, parsed: Any, verdict: Any) -> Rollout:
    task = query.task
    return Rollout(
        rollout_id=query.id,
        task_id=task.task_id,
        type=task.type,
        purpose=query.purpose,
        prompt=query.prompt,
        prediction=parsed.prediction,
        format_ok=parsed.format_ok,
        format_error=parsed.format_error,
        correct=bool(parsed.format_ok and verdict is not None and verdict.correct),
        fraction=float(verdict.fraction) if verdict is not None else 0.0,
        check_detail=verdict.detail if verdict is not None else "",
        **completion_fields(completion),
    )


def fit_prompts(queries: list[Query], limit: int, length: Any) -> tuple[list[Query], dict[str, int]]:
    """The queries whose prompt fits ``limit`` tokens; the others are left out (and counted)."""
    kept = [q for q in queries if length(q) <= limit]
    return kept, {"prompts_dropped": len(queries) - len(kept)}


def summarize(rollouts: list[Rollout], gen: Any, check_s: float, extra: dict[str, Any] | None = None
              ) -> StageSummary:
    m: dict[str, Any] = {"rollouts": len(rollouts), **(extra or {})}
    for purpose in ("learnability", "train"):
        rs = [r for r in rollouts if r.purpose == purpose]
        m[f"{purpose}/count"] = len(rs)
        if rs:
            m[f"{purpose}/accuracy"] = share(r.correct for r in rs)
            m[f"{purpose}/format_ok"] = share(r.format_ok for r in rs)
        for t in KINDS:
            sub = [r for r in rs if r.type == t]
            if sub:
                m[f"{purpose}/accuracy/{t}"] = share(r.correct for r in sub)
                m[f"{purpose}/format_ok/{t}"] = share(r.format_ok for r in sub)
                m[f"{purpose}/truncated/{t}"] = share(r.finish == "length" for r in sub)
    m.update(
        truncated=share(r.finish == "length" for r in rollouts),
        tokens=gen.tokens,
        tokens_per_s=round(gen.tokens_per_s, 2),
        generate_s=round(gen.seconds, 3),
        check_s=round(check_s, 3),
    )
    return StageSummary(count=len(rollouts), metrics=m)


def run(run: Run, n: int, session: Session, *, force: bool = False, progress: Progress | None = None) -> StageSummary:
    """Write iters/N/solve/: rollouts.jsonl + summary.json."""
    cfg = run.config
    policy = session.policy_for(n)  # loaded (or kept from the last stage) before the stage's clock starts
    started = time.perf_counter()
    new = run.records(n, TASKS)
    buffers, banded = load_buffers(run, n), {}
    if cfg.solve.difficulty_band is not None:
        buffers, banded = band_buffers(buffers, measured_rates(run, n), cfg.solve.difficulty_band)
    queries = build_queries(new, buffers, cfg, stage_rng(cfg.run.seed, n, "solve"), n)
    queries, fitted = fit_prompts(queries, cfg.solve.max_prompt_tokens, lambda q: prompt_tokens(policy, q))
    gen = generate(policy, queries, cfg.solve, derive_seed(cfg.run.seed, n, "solve", "gen"), progress)
    parsed = [KINDS[q.type].parse_solver(policy.answer_prefix + c.text, cfg.reward.strict)
              for q, c in zip(queries, gen.completions, strict=True)]
    check_start = time.perf_counter()
    verdicts = judge_answers(queries, [p.prediction if p.format_ok else None for p in parsed], session.sandbox(), cfg)
    check_s = time.perf_counter() - check_start
    rollouts = [to_rollout(*x) for x in zip(queries, gen.completions, parsed, verdicts, strict=True)]
    summary = summarize(rollouts, gen, check_s, {**fitted, **banded, "prompt_format": policy.prompt_format})
    return run.write_stage(n, ROLLOUTS.stage, {ROLLOUTS.name: rollouts}, summary, force=force, started=started)
