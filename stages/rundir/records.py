"""Record schemas written by the stages: one pydantic model per JSONL file, each carrying ids.

Later stages join earlier records by id (task_id, proposal_id, rollout_id), never by position.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stages.method.tasks import Purpose, Role, TaskType

Finish = Literal["stop", "eos", "length"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Task(Record):
    """A validated task: a program, its input(s) and the gold output(s) from the sandbox.

    deduction/abduction: one input and one output. induction: N inputs and outputs, of which the
    first `n_shown` are shown to the solver and the rest are hidden and used to check its program.
    """

    task_id: str
    type: TaskType
    program: str
    inputs: list[str]
    outputs: list[str]
    message: str = ""
    n_shown: int = 0
    iteration: int = 0
    """0 for seed tasks, else the iteration whose validate stage produced it."""
    proposal_id: str | None = None


class Proposal(Record):
    proposal_id: str
    iteration: int
    type: TaskType
    prompt: str
    completion: str
    reference_task_ids: list[str] = []
    program: str | None = None
    inputs: list[str] = []
    message: str | None = None
    format_ok: bool
    format_error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_ids: list[int] = []
    completion_ids: list[int] = []
    finish: Finish | None = None
    """Why the response ended: a stop string, EOS, or ``length`` (cut at max_new_tokens: a
    truncated response, which has lost its closing tags)."""


class Validation(Record):
    proposal_id: str
    type: TaskType
    valid: bool
    reason: str | None = None
    """Why a proposal was rejected: format, parse, no_entry, banned, error, timeout, memory,
    output_limit, nondeterministic, output_not_literal, output_too_long."""
    detail: str = ""
    task: Task | None = None


class Rollout(Record):
    rollout_id: str
    task_id: str
    type: TaskType
    purpose: Purpose
    """`learnability`: one of n rollouts on a new task to estimate its solve rate;
    `train`: a member of the solver's training batch."""
    prompt: str
    completion: str
    prediction: str | None = None
    format_ok: bool
    format_error: str | None = None
    correct: bool = False
    fraction: float = 0.0
    """Induction: share of hidden inputs the proposed program got right."""
    check_detail: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_ids: list[int] = []
    completion_ids: list[int] = []
    finish: Finish | None = None
    """Why the response ended: a stop string, EOS, or ``length`` (cut at max_new_tokens: a
    truncated response, which has lost its closing tags)."""


class Sample(Record):
    """A training sample of the update (``samples.jsonl``): one response of one role, with its
    reward and advantage. The update joins it by id with the response's tokens."""

    sample_id: str
    """The proposal_id or rollout_id it scores."""
    role: Role
    type: TaskType
    reward: float
    advantage: float
    solve_rate: float | None = None
    """Proposer samples: mean solver accuracy over the learnability rollouts (None if invalid)."""
    format_ok: bool = True
    valid: bool | None = None
    correct: bool | None = None
    # The levers beyond the paper (issue #26) add these; left off, a record is written as before.
    purpose: Purpose | None = Field(None, exclude_if=lambda v: v is None)
    """Solver samples under ``solve.reuse_learnability``: ``learnability`` for a learnability
    rollout trained on (its own baseline per type); absent for the training batch."""
    similarity: float | None = Field(None, exclude_if=lambda v: v is None)
    """Valid proposals under ``reward.diversity_penalty``: the greatest similarity to the
    references and the buffer of the type (the reward lost weight × similarity)."""
    length_penalty: float | None = Field(None, exclude_if=lambda v: v is None)
    """Under ``update.overlong: penalize``: the soft length penalty added to the reward (≤ 0)."""
    measured_reward: float | None = Field(None, exclude_if=lambda v: v is None)
    """Under ``reward.control: random``: the reward the run measured; ``reward`` is the random one."""


class StageSummary(Record):
    """What a stage reports, and writes as its ``summary.json``."""

    count: int = 0
    """Records written (proposals, validations, rollouts, samples; the update's samples)."""
    metrics: dict[str, Any] = {}
    """Scalars for metrics.jsonl, TensorBoard and the report (``seconds`` is the stage's wall time)."""
    reasons: dict[str, int] = {}
    """Validation: rejections per reason."""
    overrides: dict[str, Any] = {}
    """Runtime config fields overridden for this invocation."""
