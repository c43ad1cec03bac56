"""`azr propose`: the proposer writes B task proposals per type.

Each type's kind draws what its prompt shows: deduction/abduction, K reference tasks drawn
uniformly from that type's buffer; induction, one program drawn from the buffers of the kinds
that propose programs (deduction ∪ abduction), asking for N inputs and a message. Records keep the prompt, the completion, the parsed fields and the format
verdict; `validate` judges them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from stages.config.schema import Config
from stages.method.kinds import KINDS
from stages.method.prompts import Ref
from stages.method.tasks import derive_seed, proposal_id, share, stage_rng
from stages.model.engines.base import Progress
from stages.model.turns import Query, completion_fields, generate, prompt_tokens
from stages.rundir.buffers import Buffers, load_buffers
from stages.rundir.layout import PROPOSALS
from stages.rundir.records import Proposal, StageSummary, Task
from stages.rundir.run import Run
from stages.session import Session


def _ref(task: Task) -> Ref:
    return Ref(program=task.program, inputs=task.inputs, outputs=task.outputs, message=task.message)


def proposer_query(cfg: Config, qid: str, task_type: str, refs: list[Task], demo: Task | None = None) -> Query:
    """The proposer prompt ``qid`` of a type, showing ``refs`` (induction: the one program to give
    inputs for) and, with demonstrations, ``demo`` (a task shown as a worked exchange, or None)."""
    from sandbox.checks import describe_rules

    kind, n_inputs, rules = KINDS[task_type], cfg.propose.induction_inputs, describe_rules(cfg.sandbox)
    shown = [_ref(r) for r in refs]
    if cfg.propose.demonstrations:
        turns = kind.proposer_turns(shown, n_inputs, rules, demo=_ref(demo) if demo is not None else None)
    else:
        turns = [("user", kind.proposer_prompt(shown, n_inputs=n_inputs, rules=rules))]
    return Query(qid, task_type, turns, references=refs)


def build_queries(buffers: Buffers, cfg: Config, rng: random.Random, iteration: int) -> list[Query]:
    """B prompts per type, in the registry's order (deduction, abduction, induction)."""
    out: list[Query] = []
    programs = [task for name, kind in KINDS.items() if kind.proposes_program for task in buffers.get(name, [])]
    for t, kind in KINDS.items():
        for k in range(cfg.run.batch_size):
            refs, demo = kind.draw_references(buffers.get(t, []), programs, cfg.propose.references, rng,
                                              cfg.propose.demonstrations)
            out.append(proposer_query(cfg, proposal_id(iteration, t, k), t, refs, demo))
    return out


def fit_prompts(queries: list[Query], cfg: Config, length: Callable[[Query], int]
                ) -> tuple[list[Query], dict[str, int]]:
    """Queries whose prompt fits ``propose.max_prompt_tokens``: one over it shows fewer references
    (the last ones go first); one that still does not fit is left out. Returns the queries and the
    counts of shortened and dropped prompts."""
    limit, kept, shortened, dropped = cfg.propose.max_prompt_tokens, [], 0, 0
    for q in queries:
        shown = len(q.references)
        while length(q) > limit and KINDS[q.type].shortens_references() and len(q.references) > 1:
            q = proposer_query(cfg, q.id, q.type, q.references[:-1])
        if length(q) > limit:
            dropped += 1
            continue
        shortened += len(q.references) < shown
        kept.append(q)
    return kept, {"prompts_shortened": shortened, "prompts_dropped": dropped}


def to_record(query: Query, iteration: int, completion: Any, n_inputs: int, strict: bool = True,
              prefix: str = "") -> Proposal:
    """The proposal record; ``prefix`` is what the prompt prefilled of the response (R1: <think>)."""
    kind = KINDS[query.type]
    parsed = kind.parse_proposal(prefix + completion.text, n_inputs=n_inputs, strict=strict)
    program = kind.proposal_program(parsed.program, query.references)
    return Proposal(
        proposal_id=query.id,
        iteration=iteration,
        type=query.type,
        prompt=query.prompt,
        reference_task_ids=[r.task_id for r in query.references],
        program=program,
        inputs=parsed.inputs,
        message=parsed.message,
        format_ok=parsed.format_ok,
        format_error=parsed.format_error,
        **completion_fields(completion),
    )


def summarize(records: list[Proposal], gen: Any, fitted: dict[str, int] | None = None,
              prompt_format: str = "") -> StageSummary:
    by_type = {t: [r for r in records if r.type == t] for t in KINDS}
    return StageSummary(
        count=len(records),
        metrics={
            **(fitted or {}),
            **({"prompt_format": prompt_format} if prompt_format else {}),
            "proposals": len(records),
            "format_ok": share(r.format_ok for r in records),
            **{f"format_ok/{t}": share(r.format_ok for r in rs) for t, rs in by_type.items()},
            "truncated": share(r.finish == "length" for r in records),
            **{f"truncated/{t}": share(r.finish == "length" for r in rs) for t, rs in by_type.items()},
            "tokens": gen.tokens,
            "tokens_per_s": round(gen.tokens_per_s, 2),
            "generate_s": round(gen.seconds, 3),
        },
    )


def run(run: Run, n: int, session: Session, *, force: bool = False, progress: Progress | None = None) -> StageSummary:
    """Write iters/N/propose/: proposals.jsonl + summary.json. Returns the summary."""
    cfg = run.config
    policy = session.policy_for(n)  # loaded (or kept from the last stage) before the stage's clock starts
    started = time.perf_counter()
    queries = build_queries(load_buffers(run, n - 1), cfg, stage_rng(cfg.run.seed, n, "propose"), n)
    queries, fitted = fit_prompts(queries, cfg, lambda q: prompt_tokens(policy, q))
    gen = generate(policy, queries, cfg.propose, derive_seed(cfg.run.seed, n, "propose", "gen"), progress)
    records = [to_record(q, n, c, cfg.propose.induction_inputs, cfg.reward.strict, policy.answer_prefix)
               for q, c in zip(queries, gen.completions, strict=True)]
    summary = summarize(records, gen, fitted, policy.prompt_format)
    return run.write_stage(n, PROPOSALS.stage, {PROPOSALS.name: records}, summary, force=force, started=started)
