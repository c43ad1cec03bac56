"""How a prompt is wrapped for the model: the R1 template for base models (the paper's), the
tokenizer's chat template for instruct models, or plain text; and the tokens that end a response.

The R1 template (after DeepSeek-R1-Zero, as the paper uses it) frames the prompt as one exchange
and ends with ``Assistant: <think>``: the ``<think>`` is *prefilled*, part of the prompt, so the
response starts inside the reasoning; parsers read a response as :data:`R1_PREFIX` + its text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from stages.errors import ModelError

PromptFormat = str
"""One of ``r1``, ``chat``, ``plain`` (``auto`` is resolved by :func:`resolve_format`)."""

R1_PREFIX = "<think>"
R1_PREAMBLE = (
    "A conversation between User and Assistant. The User asks a question and the Assistant answers "
    "it. The Assistant first reasons the question through in its mind, then gives the User the "
    "answer. The reasoning is inside <think> </think> tags and the answer inside <answer> </answer> "
    "tags: <think> reasoning here </think> <answer> answer here </answer>.\n"
)

BUILTIN_FORMATS = {"builtin:tiny": "chat", "builtin:smollm2-135m": "chat", "builtin:qwen2.5-coder-0.5b": "chat"}
"""The built-ins' own formats: each ships a ChatML template (SmolLM2 and Qwen2.5-Coder are instruct
models)."""

_INSTRUCT = re.compile(r"(instruct|chat|[-_]it\b|[-_]sft\b|rlhf|dpo)", re.IGNORECASE)

END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>")
"""Tokens that end a response wherever the vocabulary has them: Qwen's base models end with
``<|endoftext|>`` but write ``<|im_end|>`` after a turn, and a base model prompted with the R1
template may write either."""


def resolve_format(requested: str, name: str, tokenizer: Any) -> PromptFormat:
    """``auto``: a built-in's own format; else the chat template for an instruct checkpoint (its
    name says instruct/chat/it) that has one, else the R1 template (a base model)."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if requested == "chat" and not has_template:
        raise ModelError("model.prompt_format is 'chat' but the tokenizer has no chat template; "
                         "use --set model.prompt_format=r1 (or plain, or auto)")
    if requested != "auto":
        return requested
    if name in BUILTIN_FORMATS:
        return BUILTIN_FORMATS[name]
    return "chat" if has_template and _INSTRUCT.search(name) else "r1"


def wrap(fmt: PromptFormat, tokenizer: Any, turns: Sequence[tuple[str, str]]) -> str:
    """The text the model is given for a prompt of (role, content) turns, the last one the user's."""
    if fmt == "chat":
        messages = [{"role": role, "content": text} for role, text in turns]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if fmt == "r1":
        body = "".join(f"{role.capitalize()}: {text}\n" for role, text in turns)
        return f"{R1_PREAMBLE}{body}Assistant: {R1_PREFIX}"
    if len(turns) == 1:
        return turns[0][1]
    return "".join(f"{role.capitalize()}: {text}\n\n" for role, text in turns) + "Assistant:"


def answer_prefix(fmt: PromptFormat) -> str:
    """What the prompt prefilled of the response (read before the response by the parsers)."""
    return R1_PREFIX if fmt == "r1" else ""


def end_token_ids(tokenizer: Any) -> list[int]:
    """The ids of :data:`END_TOKENS` that the tokenizer really has."""
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in END_TOKENS if t in vocab]
