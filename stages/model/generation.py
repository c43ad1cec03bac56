"""What every rollout engine shares (:mod:`stages.model.engines`): the completion of one request
and the result of one call, and the per-request seeds that make a completion depend on its prompt
and seed alone (not on the batch, the engine's scheduling, or the rank that generates it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Completion:
    text: str
    """The completion, cut right after the stop string (EOS and padding left out)."""
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int]
    """The sampled tokens, EOS included when one ended the completion; no padding."""
    prompt_ids: list[int]
    """The prompt's tokens, no padding: the sequence the model saw is ``prompt_ids + token_ids``."""
    finish: str = "length"
    """Why it ended: ``stop`` (a stop string), ``eos``, or ``length`` (max_new_tokens)."""


@dataclass
class GenerationResult:
    completions: list[Completion]
    seconds: float
    tokens: int = field(init=False)
    """Completion tokens generated, summed over prompts."""

    def __post_init__(self) -> None:
        self.tokens = sum(c.completion_tokens for c in self.completions)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.completions]


def request_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th request of a call seeded ``seed``: what it samples depends on
    that pair alone, not on the batch it shares or the rank that generates it."""
    digest = hashlib.sha256(f"azr-request:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def as_list(x: Any) -> list[int]:
    """Token ids (a generation config's ``eos_token_id``: None, one id or several) as a list."""
    if x is None:
        return []
    if isinstance(x, int):
        return [x]
    return [int(i) for i in x]
