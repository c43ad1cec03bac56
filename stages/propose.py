"""`azr propose`: the proposer writes B task proposals per type.

deduction/abduction prompts show K reference tasks drawn uniformly from that type's buffer;
induction prompts show one program drawn from the deduction ∪ abduction buffers and ask for N
inputs and a message. Records keep the prompt, the completion, the parsed fields and the format
verdict; `validate` judges them.
"""

from __future__ import annotations

import random
import time
from typing import Any

from stages.config.schema import Config
from stages.method.parsers import parse_proposal
from stages.method.prompts import Ref, proposer_prompt, proposer_turns
from stages.method.tasks import TASK_TYPES, derive_seed, proposal_id, share, stage_rng
from stages.model.turns import Query, completion_fields, generate
from stages.pipeline import Progress
from stages.rundir.buffers import Buffers, load_buffers, sample_references
from stages.rundir.records import Proposal, StageSummary, Task
from stages.rundir.run import Run


def _ref(task: Task) -> Ref:
    return Ref(program=task.program, inputs=task.inputs, outputs=task.outputs, message=task.message)


def build_queries(buffers: Buffers, cfg: Config, rng: random.Random, iteration: int) -> list[Query]:
    """B prompts per type, in a fixed order (deduction, abduction, induction)."""
    out: list[Query] = []
    programs = buffers["deduction"] + buffers["abduction"]
    n_inputs, demos = cfg.propose.induction_inputs, cfg.propose.demonstrations
    for t in TASK_TYPES:
        for k in range(cfg.run.batch_size):
            if t == "induction":
                refs = [rng.choice(programs)]
                if demos:
                    demo = _ref(rng.choice(buffers["induction"])) if buffers["induction"] else None
                    turns = proposer_turns(t, [_ref(refs[0])], n_inputs, demo)
                else:
                    turns = [("user", proposer_prompt(t, [_ref(refs[0])], n_inputs=n_inputs))]
            else:
                refs = sample_references(buffers[t], cfg.propose.references, rng)
                turns = (proposer_turns(t, [_ref(r) for r in refs], n_inputs) if demos
                         else [("user", proposer_prompt(t, [_ref(r) for r in refs], n_inputs=n_inputs))])
            out.append(Query(proposal_id(iteration, t, k), t, turns, references=refs))
    return out


def to_record(query: Query, iteration: int, completion: Any, n_inputs: int, strict: bool = True) -> Proposal:
    parsed = parse_proposal(completion.text, query.type, n_inputs=n_inputs, strict=strict)
    program = query.references[0].program if query.type == "induction" else parsed.program
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


def summarize(records: list[Proposal], gen: Any) -> StageSummary:
    by_type = {t: [r for r in records if r.type == t] for t in TASK_TYPES}
    return StageSummary(
        count=len(records),
        metrics={
            "proposals": len(records),
            "format_ok": share(r.format_ok for r in records),
            **{f"format_ok/{t}": share(r.format_ok for r in rs) for t, rs in by_type.items()},
            "tokens": gen.tokens,
            "tokens_per_s": round(gen.tokens_per_s, 2),
            "generate_s": round(gen.seconds, 3),
        },
    )


def run(run: Run, n: int, session: Any, *, force: bool = False, progress: Progress | None = None) -> StageSummary:
    """Write iters/N/propose/: proposals.jsonl + summary.json. Returns the summary."""
    started = time.perf_counter()
    cfg = run.config
    queries = build_queries(load_buffers(run, n - 1), cfg, stage_rng(cfg.run.seed, n, "propose"), n)
    gen = generate(session.policy_for(n), queries, cfg.propose, derive_seed(cfg.run.seed, n, "propose", "gen"),
                   progress)
    records = [to_record(q, n, c, cfg.propose.induction_inputs, cfg.reward.strict)
               for q, c in zip(queries, gen.completions, strict=True)]
    return run.write_stage(n, "propose", {"proposals.jsonl": records}, summarize(records, gen),
                           force=force, started=started)
