"""What `azr report` reads from a run directory, extracted once into a :class:`RunData`.

:func:`collect` reads the completed stages' and seeding rounds' ``summary.json`` files, the seed
buffer and any ``eval/*.json`` results (only completed stages and seeding rounds: the folder is
the mark); :func:`buffer_sizes` rebuilds the buffer sizes after each iteration from them. The
figures and the summary are made from this in :mod:`stages.monitor.report`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.errors import RunError
from stages.method.levers import run_markers
from stages.method.tasks import TASK_TYPES
from stages.rundir.buffers import seed_buffer
from stages.rundir.jsonl import read_json
from stages.rundir.layout import STAGE_NAMES
from stages.rundir.run import Run

GENERATING_STAGE_NAMES = ("propose", "solve")


@dataclass
class EvalResult:
    suite: str
    iteration: int | None
    """None for the base model (before any update)."""
    score: float
    pass_at_k: dict[int, float] = field(default_factory=dict)
    """k -> pass@k, when the evaluation sampled several completions per item."""


@dataclass
class RunData:
    """Everything the figures need, extracted once from the run directory."""

    path: Path
    base_model: str
    config_digest: str
    buffer_cap: int
    completed_iterations: int
    metrics: dict[int, dict[str, dict[str, Any]]]
    """iteration -> stage -> that stage's summary metrics (completed stages only)."""
    reasons: dict[int, dict[str, int]]
    """iteration -> rejection reason -> count (validate)."""
    seed_counts: dict[str, int]
    seed_rounds: int = 0
    """Complete rounds of the seeding phase."""
    seed_reasons: dict[str, int] = field(default_factory=dict)
    """Rejection reason -> count over the seeding phase's rounds."""
    seed_proposals: int = 0
    seed_valid: int = 0
    evals: list[EvalResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def iterations(self) -> list[int]:
        return sorted(self.metrics)

    def series(self, stage: str, key: str) -> tuple[list[int], list[float]]:
        """(iterations, values) of one metric, skipping iterations where it is absent."""
        xs, ys = [], []
        for n in self.iterations:
            v = self.metrics[n].get(stage, {}).get(key)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                xs.append(n)
                ys.append(float(v))
        return xs, ys


# ----------------------------------------------------------------------------- collect


def collect(run: Run) -> RunData:
    metrics: dict[int, dict[str, dict[str, Any]]] = {}
    reasons: dict[int, dict[str, int]] = {}
    for n in run.iterations():
        for stage in STAGE_NAMES:
            if not run.is_done(n, stage):
                continue
            summ = run.summary(n, stage)
            metrics.setdefault(n, {})[stage] = summ.metrics
            if stage == "validate":
                reasons[n] = dict(summ.reasons)
    seeds = seed_buffer(run) if run.seed_file.exists() or run.seed_rounds() else []
    seed_reasons: Counter[str] = Counter()
    seed_proposals = seed_valid = 0
    for k in range(1, run.seed_rounds() + 1):
        summ = run.round_summary(k)
        seed_reasons.update(summ.reasons)
        seed_proposals += summ.count
        seed_valid += summ.count - sum(summ.reasons.values())
    data = RunData(
        path=run.path,
        base_model=str(run.manifest.get("base_model", run.config.model.name)),
        config_digest=str(run.manifest.get("config_digest", "")),
        buffer_cap=run.config.validate_.buffer_cap,
        completed_iterations=run.completed_iterations(),
        metrics=metrics,
        reasons=reasons,
        seed_counts={t: c for t, c in Counter(s.type for s in seeds).items()},
        seed_rounds=run.seed_rounds(),
        seed_reasons=dict(sorted(seed_reasons.items())),
        seed_proposals=seed_proposals,
        seed_valid=seed_valid,
    )
    data.evals, skipped = read_evals(run.path / "eval")
    data.notes.extend(f"**{m}**" for m in run_markers(run.config.reward.control))
    data.notes.extend(f"skipped {p}: {why}" for p, why in skipped)
    return data


def read_evals(folder: Path) -> tuple[list[EvalResult], list[tuple[Path, str]]]:
    """Every ``<suite>-<iter|base>.json`` under `folder`; damaged ones are skipped and named."""
    out: list[EvalResult] = []
    skipped: list[tuple[Path, str]] = []
    if not folder.is_dir():
        return out, skipped
    for p in sorted(folder.glob("*.json")):
        try:
            d = read_json(p)
            it = d.get("iteration")
            passk = {int(k): float(v) for k, v in (d.get("pass_at_k") or {}).items()}
            out.append(EvalResult(str(d["suite"]), None if it is None else int(it), float(d["score"]), passk))
        except RunError as e:
            skipped.append((p, str(e)))
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            skipped.append((p, f"not an eval result ({type(e).__name__}: {e})"))
    return out, skipped


def buffer_sizes(data: RunData) -> dict[str, tuple[list[int], list[int]]]:
    """Buffer size per type after each iteration's validate: seeds plus the valid tasks so far,
    capped like :func:`stages.rundir.buffers.cap_buffers` (seeds always stay)."""
    out: dict[str, tuple[list[int], list[int]]] = {}
    for t in TASK_TYPES:
        seeds = data.seed_counts.get(t, 0)
        xs, news = data.series("validate", f"new_tasks/{t}")
        sizes, total = [], seeds
        for v in news:
            total += int(v)
            sizes.append(total if total <= data.buffer_cap else seeds + max(data.buffer_cap - seeds, 0))
        out[t] = ([0, *xs], [seeds, *sizes])
    return out
