"""`azr reward`: rewards for every proposal and every solver training rollout, and TRR++
advantages normalised per (task type, role) batch.

proposer: −1 badly formatted or invalid; else learnability 1 − r̄ over the task's n rollouts
(`trivial_task_reward` when r̄ is 0 or 1). solver: +1 correct, −0.5 wrong, −1 badly formatted.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from stages.config.schema import RewardSection
from stages.method.rewards import proposer_reward, solver_reward, trr_advantages
from stages.method.tasks import ROLES, TASK_TYPES, share
from stages.pipeline import Progress
from stages.rundir.records import Proposal, Rollout, Sample, StageSummary, Validation
from stages.rundir.run import Run


def solve_rates(rollouts: list[Rollout]) -> dict[str, float]:
    """task_id -> mean accuracy of its learnability rollouts."""
    by_task: dict[str, list[bool]] = defaultdict(list)
    for r in rollouts:
        if r.purpose == "learnability":
            by_task[r.task_id].append(r.correct)
    return {t: share(c) for t, c in by_task.items()}


def score(
    proposals: list[Proposal], validations: list[Validation], rollouts: list[Rollout], cfg: RewardSection
) -> list[Sample]:
    valid = {v.proposal_id: v for v in validations}
    rates = solve_rates(rollouts)
    out: list[Sample] = []
    for p in proposals:
        v = valid[p.proposal_id]
        rate = rates.get(v.task.task_id) if v.task is not None else None
        out.append(
            Sample(
                sample_id=p.proposal_id,
                role="proposer",
                type=p.type,
                advantage=0.0,
                reward=proposer_reward(v.valid, p.format_ok, rate, cfg),
                solve_rate=rate,
                format_ok=p.format_ok,
                valid=v.valid,
            )
        )
    for r in rollouts:
        if r.purpose == "train":
            out.append(
                Sample(
                    sample_id=r.rollout_id,
                    role="solver",
                    type=r.type,
                    advantage=0.0,
                    reward=solver_reward(r.format_ok, r.correct, cfg),
                    format_ok=r.format_ok,
                    correct=r.correct,
                )
            )
    for s, a in zip(out, trr_advantages(out, cfg.advantage_eps), strict=True):
        s.advantage = a
    return out


def summarize(samples: list[Sample]) -> StageSummary:
    m: dict[str, Any] = {"samples": len(samples)}
    for role in ROLES:
        for t in TASK_TYPES:
            sub = [s for s in samples if s.role == role and s.type == t]
            if not sub:
                continue
            m[f"reward/{role}/{t}"] = sum(s.reward for s in sub) / len(sub)
            if role == "proposer":
                m[f"validity/{t}"] = share(bool(s.valid) for s in sub)
                rates = [s.solve_rate for s in sub if s.solve_rate is not None]
                if rates:
                    m[f"solve_rate/{t}"] = sum(rates) / len(rates)
            else:
                m[f"accuracy/{t}"] = share(bool(s.correct) for s in sub)
    return StageSummary(count=len(samples), metrics=m)


def run(run: Run, n: int, session: Any = None, *, force: bool = False,
        progress: Progress | None = None) -> StageSummary:
    """Write iters/N/reward/: samples.jsonl (reward + advantage per sample) + summary.json."""
    started = time.perf_counter()
    samples = score(
        run.read(n, "propose", "proposals.jsonl", Proposal),
        run.read(n, "validate", "validations.jsonl", Validation),
        run.read(n, "solve", "rollouts.jsonl", Rollout),
        run.config.reward,
    )
    return run.write_stage(n, "reward", {"samples.jsonl": samples}, summarize(samples), force=force, started=started)
