"""Prompts as chat turns: rendered into the text the policy is given, generated for in one call,
and the record fields every generated response carries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stages.method.prompts import Turn, show_turns
from stages.method.tasks import Purpose, TaskType
from stages.model.engines.base import Progress
from stages.model.generation import Completion, GenerationResult
from stages.rundir.records import Task

if TYPE_CHECKING:
    from stages.model.policy import Policy


@dataclass(frozen=True)
class Query:
    """One prompt to generate a response for: the id its record will carry, the task type, the
    prompt's turns, and what the response is about: the reference tasks the proposer was shown, or
    the task the solver must solve and why (learnability or train)."""

    id: str
    type: TaskType
    turns: list[Turn]
    references: list[Task] = field(default_factory=list)
    task: Task | None = None
    purpose: Purpose | None = None

    @property
    def prompt(self) -> str:
        """The prompt as readable text, for records and `azr inspect`."""
        return show_turns(self.turns)


def render(policy: Policy, turns: Sequence[Turn]) -> str:
    """The text the policy is given for a prompt of turns (its wrapper: R1, chat template or plain)."""
    return policy.wrap_turns(turns)


def prompt_tokens(policy: Policy, query: Query) -> int:
    """How many tokens the query's prompt is, as the policy will be given it."""
    return len(policy.encode(render(policy, query.turns)))


def generate(policy: Policy, queries: Sequence[Query], gen: Any, seed: int,
             progress: Progress | None = None) -> GenerationResult:
    """Complete every query's turns with a role's generation settings (the `propose` or `solve`
    section of the config); completions in the queries' order."""
    return policy.generate(
        [render(policy, q.turns) for q in queries], max_new_tokens=gen.max_new_tokens,
        temperature=gen.temperature, top_p=gen.top_p, seed=seed, batch_size=gen.generation_batch_size,
        progress=progress,
    )


def completion_fields(c: Completion) -> dict[str, Any]:
    """The record fields every generated response carries: its text and its exact tokens."""
    return {"completion": c.text, "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "prompt_ids": c.prompt_ids, "completion_ids": c.token_ids, "finish": c.finish}
