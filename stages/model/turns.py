"""Prompts as chat turns: rendered into the text the policy is given, generated for in one call,
and the record fields every generated response carries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stages.method.prompts import Turn, show_turns
from stages.method.tasks import Purpose, TaskType
from stages.rundir.records import Task


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


def render(policy: Any, turns: Sequence[Turn]) -> str:
    """One user turn: the policy's own wrapper. Several: the tokenizer's chat template with the
    earlier turns as history, or `User:` / `Assistant:` paragraphs for plain-text models."""
    if len(turns) == 1 and turns[0][0] == "user":
        return policy.wrap(turns[0][1])
    if policy.uses_chat_template:
        messages = [{"role": role, "content": text} for role, text in turns]
        return policy.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(f"{role.capitalize()}: {text}\n\n" for role, text in turns) + "Assistant:"


def generate(policy: Any, queries: Sequence[Query], gen: Any, seed: int,
             progress: Callable[[int, int], None] | None = None) -> Any:
    """Complete every query's turns with a role's generation settings (the `propose` or `solve`
    section of the config); completions in the queries' order."""
    return policy.generate(
        [render(policy, q.turns) for q in queries], max_new_tokens=gen.max_new_tokens,
        temperature=gen.temperature, top_p=gen.top_p, seed=seed, batch_size=gen.generation_batch_size,
        progress=progress,
    )


def completion_fields(c: Any) -> dict[str, Any]:
    """The record fields every generated response carries: its text and its exact tokens."""
    return {"completion": c.text, "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "prompt_ids": c.prompt_ids, "completion_ids": c.token_ids}
