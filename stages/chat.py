"""Rendering a prompt of one or more chat turns into the text the model is given."""

from __future__ import annotations

from collections.abc import Sequence
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
