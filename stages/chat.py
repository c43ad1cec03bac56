"""Rendering a prompt of one or more chat turns into the text the model is given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from stages.prompts import Turn


def render(policy: Any, turns: Sequence[Turn]) -> str:
    """One user turn: the policy's own wrapper. Several: the tokenizer's chat template with the
    earlier turns as history, or `User:` / `Assistant:` paragraphs for plain-text models."""
    if len(turns) == 1 and turns[0][0] == "user":
        return policy.wrap(turns[0][1])
    if policy.uses_chat_template:
        messages = [{"role": role, "content": text} for role, text in turns]
        return policy.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(f"{role.capitalize()}: {text}\n\n" for role, text in turns) + "Assistant:"


def generate(policy: Any, prompts: Sequence[Sequence[Turn]], gen: Any, seed: int,
             progress: Callable[[int, int], None] | None = None) -> Any:
    """Complete every prompt (a list of turns) with a role's generation settings
    (`propose` or `solve` section of the config)."""
    return policy.generate(
        [render(policy, turns) for turns in prompts], max_new_tokens=gen.max_new_tokens,
        temperature=gen.temperature, top_p=gen.top_p, seed=seed, batch_size=gen.generation_batch_size,
        progress=progress,
    )


def completion_fields(c: Any) -> dict[str, Any]:
    """The record fields every generated response carries: its text and its exact tokens."""
    return {"completion": c.text, "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "prompt_ids": c.prompt_ids, "completion_ids": c.token_ids}
