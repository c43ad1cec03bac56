"""`azr reward`: rewards for every proposal and every solver training rollout, and TRR++
advantages normalised per (task type, role) batch.

proposer: −1 badly formatted or invalid; else learnability 1 − r̄ over the task's n rollouts
(`trivial_task_reward` when r̄ is 0 or 1). solver: +1 correct, −0.5 wrong, −1 badly formatted.

The levers beyond the paper (all off by default, :class:`RewardLevers`), in this order: the
diversity penalty on valid proposals, the learnability rollouts as solver samples, the soft
overlong penalty, the random-reward control; then the advantages.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stages.config.schema import Config, RewardSection
from stages.method.levers import fingerprint, length_penalty, max_similarity, random_control, run_markers
from stages.method.rewards import proposer_reward, solver_reward, trr_advantages
from stages.method.tasks import ROLES, TASK_TYPES, derive_seed, share
from stages.model.engines.base import Progress
from stages.rundir.layout import PROPOSALS, ROLLOUTS, SAMPLES, VALIDATIONS
from stages.rundir.records import Proposal, Rollout, Sample, StageSummary, Task, Validation
from stages.rundir.run import Run
from stages.session import Session


@dataclass(frozen=True)
class RewardLevers:
    """What the levers beyond the paper change in the reward stage; the defaults are all off."""

    reuse_learnability: bool = False
    """``solve.reuse_learnability``: learnability rollouts become solver samples (own baseline)."""
    similarity: Mapping[str, float] | None = None
    """``reward.diversity_penalty`` > 0: proposal_id -> similarity of each valid proposal."""
    overlong: tuple[int, int, int] | None = None
    """``update.overlong: penalize``: (proposer max_new_tokens, solver max_new_tokens, window)."""
    control_seed: int | None = None
    """``reward.control: random``: the seed of the random rewards."""


def levers_for(cfg: Config, n: int, similarity: Mapping[str, float] | None = None) -> RewardLevers:
    """Iteration n's reward levers from the config (``similarity`` computed by the caller)."""
    u = cfg.update
    return RewardLevers(
        reuse_learnability=cfg.solve.reuse_learnability,
        similarity=similarity if cfg.reward.diversity_penalty > 0 else None,
        overlong=((cfg.propose.max_new_tokens, cfg.solve.max_new_tokens, u.overlong_window)
                  if u.overlong == "penalize" else None),
        control_seed=derive_seed(cfg.run.seed, n, "reward", "control") if cfg.reward.control == "random" else None,
    )


def proposal_similarities(proposals: list[Proposal], validations: list[Validation],
                          buffers: Mapping[str, list[Task]]) -> dict[str, float]:
    """proposal_id -> the greatest similarity of each valid proposal's task to its references and
    to the buffer of its type that the proposer saw (``buffers``: the buffers of iteration n − 1)."""
    by_id = {t.task_id: t for ts in buffers.values() for t in ts}
    tasks = {v.proposal_id: v.task for v in validations if v.valid and v.task is not None}
    cache: dict[tuple[str, str], frozenset[Any]] = {}

    def fp(kind: str, t: Task) -> frozenset[Any]:
        key = (kind, t.task_id)
        if key not in cache:
            cache[key] = fingerprint(kind, t.program, t.inputs)
        return cache[key]

    out: dict[str, float] = {}
    for p in proposals:
        task = tasks.get(p.proposal_id)
        if task is None:
            continue
        seen = {t.task_id: t for t in buffers.get(p.type, [])}
        seen.update({i: by_id[i] for i in p.reference_task_ids if i in by_id})
        out[p.proposal_id] = max_similarity(fingerprint(p.type, task.program, task.inputs),
                                            (fp(p.type, t) for t in seen.values()))
    return out


def baseline_key(s: Sample) -> tuple[str, str]:
    """The TRR++ batch of a sample: (type, role), and (type, solver/learnability) for a reused
    learnability rollout."""
    return s.type, s.role if s.purpose is None else f"{s.role}/{s.purpose}"


def solve_rates(rollouts: list[Rollout]) -> dict[str, float]:
    """task_id -> mean accuracy of its learnability rollouts."""
    by_task: dict[str, list[bool]] = defaultdict(list)
    for r in rollouts:
        if r.purpose == "learnability":
            by_task[r.task_id].append(r.correct)
    return {t: share(c) for t, c in by_task.items()}


def score(
    proposals: list[Proposal], validations: list[Validation], rollouts: list[Rollout], cfg: RewardSection,
    levers: RewardLevers | None = None,
) -> list[Sample]:
    levers = levers or RewardLevers()
    valid = {v.proposal_id: v for v in validations}
    rates = solve_rates(rollouts)
    out: list[Sample] = []
    for p in proposals:
        v = valid[p.proposal_id]
        rate = rates.get(v.task.task_id) if v.task is not None else None
        sample = Sample(
            sample_id=p.proposal_id,
            role="proposer",
            type=p.type,
            advantage=0.0,
            reward=proposer_reward(v.valid, p.format_ok, rate, cfg),
            solve_rate=rate,
            format_ok=p.format_ok,
            valid=v.valid,
        )
        if levers.similarity is not None and p.proposal_id in levers.similarity:
            sample.similarity = levers.similarity[p.proposal_id]
            sample.reward -= cfg.diversity_penalty * sample.similarity
        out.append(sample)
    trained = ("train", "learnability") if levers.reuse_learnability else ("train",)
    for r in rollouts:
        if r.purpose in trained:
            out.append(
                Sample(
                    sample_id=r.rollout_id,
                    role="solver",
                    type=r.type,
                    advantage=0.0,
                    reward=solver_reward(r.format_ok, r.correct, cfg),
                    format_ok=r.format_ok,
                    correct=r.correct,
                    purpose="learnability" if r.purpose == "learnability" else None,
                )
            )
    if levers.overlong is not None:
        budgets = {"proposer": levers.overlong[0], "solver": levers.overlong[1]}
        lengths = {p.proposal_id: p.completion_tokens for p in proposals}
        lengths.update({r.rollout_id: r.completion_tokens for r in rollouts})
        for s in out:
            s.length_penalty = length_penalty(lengths[s.sample_id], budgets[s.role], levers.overlong[2])
            s.reward += s.length_penalty
    if levers.control_seed is not None:
        keys = [baseline_key(s) for s in out]
        randomized = random_control(keys, [s.reward for s in out], random.Random(levers.control_seed))
        for s, r in zip(out, randomized, strict=True):
            s.measured_reward, s.reward = s.reward, r
    groups = [(*baseline_key(s), s.reward) for s in out]
    for s, a in zip(out, trr_advantages(groups, cfg.advantage_eps), strict=True):
        s.advantage = a
    return out


def summarize(samples: list[Sample], markers: list[str] | None = None) -> StageSummary:
    """Per (role, type): mean reward, validity or accuracy. The levers' own figures appear only
    when their lever is on: reused learnability samples (counted apart, not in the solver's
    figures), similarity, length penalty, and the control run's marker."""
    m: dict[str, Any] = {"samples": len(samples)}
    if markers:
        m["control"] = markers[0]
    for role in ROLES:
        for t in TASK_TYPES:
            sub = [s for s in samples if s.role == role and s.type == t and s.purpose is None]
            if not sub:
                continue
            m[f"reward/{role}/{t}"] = sum(s.reward for s in sub) / len(sub)
            if role == "proposer":
                m[f"validity/{t}"] = share(bool(s.valid) for s in sub)
                rates = [s.solve_rate for s in sub if s.solve_rate is not None]
                if rates:
                    m[f"solve_rate/{t}"] = sum(rates) / len(rates)
                sims = [s.similarity for s in sub if s.similarity is not None]
                if sims:
                    m[f"similarity/{t}"] = sum(sims) / len(sims)
            else:
                m[f"accuracy/{t}"] = share(bool(s.correct) for s in sub)
            reused = [s for s in samples if s.role == role and s.type == t and s.purpose is not None]
            if reused:
                m[f"reused_learnability/{t}"] = len(reused)
    for role in ROLES:
        pens = [s.length_penalty for s in samples if s.role == role and s.length_penalty is not None]
        if pens:
            m[f"length_penalty/{role}"] = sum(pens) / len(pens)
    return StageSummary(count=len(samples), metrics=m)


def run(run: Run, n: int, session: Session | None = None, *, force: bool = False,
        progress: Progress | None = None) -> StageSummary:
    """Write iters/N/reward/: samples.jsonl (reward + advantage per sample) + summary.json."""
    started = time.perf_counter()
    cfg = run.config
    proposals = run.records(n, PROPOSALS)
    validations = run.records(n, VALIDATIONS)
    similarity = None
    if cfg.reward.diversity_penalty > 0:
        from stages.rundir.buffers import load_buffers

        similarity = proposal_similarities(proposals, validations, load_buffers(run, n - 1))
    samples = score(proposals, validations, run.records(n, ROLLOUTS), cfg.reward,
                    levers_for(cfg, n, similarity))
    summary = summarize(samples, run_markers(cfg.reward.control))
    return run.write_stage(n, SAMPLES.stage, {SAMPLES.name: samples}, summary, force=force, started=started)
