"""`azr propose`: the proposer writes B task proposals per type.

deduction/abduction prompts show K reference tasks drawn uniformly from that type's buffer;
induction prompts show one program drawn from the deduction ∪ abduction buffers and ask for N
inputs and a message. Records keep the prompt, the completion, the parsed fields and the format
verdict; `validate` judges them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stages.buffer import Buffers, load_buffers, sample_references
from stages.chat import completion_fields, generate
from stages.common import derive_seed, proposal_id, share, stage_rng
from stages.config import TASK_TYPES, Config
from stages.parsers import parse_proposal
from stages.prompts import Ref, Turn, proposer_prompt, proposer_turns, show_turns
from stages.records import Proposal, Task, TaskType
from stages.rundir import Run


@dataclass(frozen=True)
class Request:
    proposal_id: str
    type: TaskType
    turns: list[Turn]
    references: list[Task]

    @property
    def prompt(self) -> str:
        return show_turns(self.turns)


def _ref(task: Task) -> Ref:
    return Ref(program=task.program, inputs=task.inputs, outputs=task.outputs, message=task.message)


def build_requests(buffers: Buffers, cfg: Config, rng: random.Random, iteration: int) -> list[Request]:
    """B prompts per type, in a fixed order (deduction, abduction, induction)."""
    out: list[Request] = []
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
            out.append(Request(proposal_id(iteration, t, k), t, turns, refs))
    return out


def to_record(req: Request, iteration: int, completion: Any, n_inputs: int, strict: bool = True) -> Proposal:
    parsed = parse_proposal(completion.text, req.type, n_inputs=n_inputs, strict=strict)
    program = req.references[0].program if req.type == "induction" else parsed.program
    return Proposal(
        proposal_id=req.proposal_id,
        iteration=iteration,
        type=req.type,
        prompt=req.prompt,
        reference_task_ids=[r.task_id for r in req.references],
        program=program,
        inputs=parsed.inputs,
        message=parsed.message,
        format_ok=parsed.format_ok,
        format_error=parsed.format_error,
        **completion_fields(completion),
    )


def summarize(records: list[Proposal], gen: Any) -> dict[str, Any]:
    by_type = {t: [r for r in records if r.type == t] for t in TASK_TYPES}
    return {
        "count": len(records),
        "metrics": {
            "proposals": len(records),
            "format_ok": share(r.format_ok for r in records),
            **{f"format_ok/{t}": share(r.format_ok for r in rs) for t, rs in by_type.items()},
            "tokens": gen.tokens,
            "tokens_per_s": round(gen.tokens_per_s, 2),
            "generate_s": round(gen.seconds, 3),
        },
    }


def run(
    run: Run,
    n: int,
    policy: Any,
    *,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    buffers: Buffers | None = None,
) -> dict[str, Any]:
    """Write iters/N/propose/: proposals.jsonl + summary.json. Returns the summary."""
    started = time.perf_counter()
    cfg = run.config
    buffers = buffers if buffers is not None else load_buffers(run, n - 1)
    requests = build_requests(buffers, cfg, stage_rng(cfg.run.seed, n, "propose"), n)
    p = cfg.propose
    gen = generate(policy, [r.turns for r in requests], p, derive_seed(cfg.run.seed, n, "propose", "gen"), progress)
    strict = cfg.reward.format == "strict"
    records = [
        to_record(r, n, c, p.induction_inputs, strict) for r, c in zip(requests, gen.completions, strict=True)
    ]
    summary = summarize(records, gen)
    run.write_stage(n, "propose", {"proposals.jsonl": records}, summary, force=force, started=started)
    return summary
