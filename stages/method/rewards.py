"""Rewards of both roles and the Task-Relative REINFORCE++ (TRR++) advantages (arXiv 2505.03335:
the proposer's learnability reward, the solver's accuracy reward, Task-Relative REINFORCE++).

Pure functions over plain values: the reward stage reads records, calls these, writes records.

- solver: +1 correct, −0.5 well formatted but wrong, −1 format error (all from ``RewardSection``).
- proposer: −1 invalid or badly formatted; otherwise the learnability 1 − r̄ of the task, where r̄ is
  the mean accuracy of the learnability rollouts; a task every or no rollout solves (r̄ ∈ {0, 1})
  teaches nothing and gets ``trivial_task_reward`` (0 in the paper's formula, −0.5 in the official
  code).
- TRR++: A = (r − μ) / (σ + ε) with one baseline per (task type, role): six batches, six baselines.
  σ is the **population** standard deviation (divide by the group size, not size − 1): it is
  defined for every group size, and a group whose rewards are all equal (a group of one included)
  gets A = 0 exactly, since r − μ = 0.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stages.config.schema import RewardSection


def solver_reward(format_ok: bool, correct: bool, cfg: RewardSection) -> float:
    """Reward of one solver response; a badly formatted answer is never counted as correct."""
    if not format_ok:
        return cfg.format_error
    return cfg.solver_correct if correct else cfg.solver_wrong


def proposer_reward(valid: bool, format_ok: bool, solve_rate: float | None, cfg: RewardSection) -> float:
    """Reward of one proposal: format error, invalid, trivial, or learnability 1 − r̄.

    ``solve_rate`` is r̄, the mean solver accuracy over the task's learnability rollouts; it is
    required for a valid proposal (a valid task always has rollouts).
    """
    if not format_ok:
        return cfg.format_error
    if not valid:
        return cfg.proposer_invalid
    if solve_rate is None:
        raise ValueError("a valid proposal needs its solve rate (mean accuracy of its learnability rollouts)")
    if not 0.0 <= solve_rate <= 1.0:
        raise ValueError(f"solve rate must lie in [0, 1], got {solve_rate}")
    if solve_rate in (0.0, 1.0):
        return cfg.trivial_task_reward
    return 1.0 - solve_rate


def _group_key(sample: Any) -> tuple[str, str]:
    if isinstance(sample, Sequence) and not isinstance(sample, str):
        return str(sample[0]), str(sample[1])
    task_type = getattr(sample, "task_type", None) or sample.type
    return str(task_type), str(sample.role)


def _reward(sample: Any) -> float:
    if isinstance(sample, Sequence) and not isinstance(sample, str):
        return float(sample[2])
    return float(sample.reward)


def group_stats(samples: Iterable[Any]) -> dict[tuple[str, str], tuple[float, float, int]]:
    """(task type, role) -> (mean reward, population std, count)."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in samples:
        groups[_group_key(s)].append(_reward(s))
    out = {}
    for key, rs in groups.items():
        mean = math.fsum(rs) / len(rs)
        var = math.fsum((r - mean) ** 2 for r in rs) / len(rs)
        out[key] = (mean, math.sqrt(var), len(rs))
    return out


def trr_advantages(samples: Sequence[Any], eps: float = 1e-6) -> list[float]:
    """TRR++ advantages, in the order of ``samples``.

    A sample is a ``(task_type, role, reward)`` tuple or an object with ``task_type`` (or
    ``type``), ``role`` and ``reward`` attributes (e.g. a ``records.Scored``).
    """
    stats = group_stats(samples)
    out = []
    for s in samples:
        mean, std, _ = stats[_group_key(s)]
        diff = _reward(s) - mean
        # exactly 0 for a group of equal rewards, even when float rounding leaves a residue
        out.append(0.0 if std == 0.0 else diff / (std + eps))
    return out
