"""What every rollout engine is: :class:`Engine` takes one generation call's :class:`Requests`
(prompts already encoded by the policy, one seed per request) and gives back one
:class:`~stages.model.generation.Completion` per request, in input order.

The policy (:mod:`stages.model.policy`) owns the weights: model, tokenizer, adapter, checkpoint,
and what a call shares whatever generates it (encoding, per-request seeds, stop strings). An
engine owns generation, and says how it relates to the weights (:attr:`Engine.uses_live_weights`).
:func:`completion` is how every engine turns sampled tokens into a completion (text cut right
after the stop string), so that the records do not depend on the engine.

Nothing heavy is imported here: the registry (:mod:`stages.model.engines`) imports this module
when the config is validated.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from stages.model.generation import Completion

Progress = Callable[[int, int], None]
"""Called with (requests done, requests in the call)."""


@dataclass(frozen=True)
class Requests:
    """One generation call, as every engine takes it: request ``i`` is the prompt ``prompt_ids[i]``
    sampled from its own stream seeded ``seeds[i]``, so its completion depends on that pair alone."""

    prompt_ids: list[list[int]]
    seeds: list[int]
    max_new_tokens: int
    temperature: float
    """0: greedy."""
    top_p: float
    stop: tuple[str, ...] = ()
    """Stop strings: a completion ends right after the first one (none empty)."""
    batch_size: int = 1
    """Prompts generated together (a speed/memory knob: the completions do not depend on it)."""

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def options(self) -> dict[str, Any]:
        """The call's settings, prompts and seeds left out (:meth:`with_options` takes them back)."""
        return dict(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                    stop=self.stop, batch_size=self.batch_size)

    @classmethod
    def with_options(cls, prompt_ids: Sequence[list[int]], seeds: Sequence[int], options: dict[str, Any]) -> Requests:
        return cls(list(prompt_ids), list(seeds), **options)

    def select(self, indices: Sequence[int]) -> Requests:
        """The requests ``indices`` (in that order), with the same settings."""
        return replace(self, prompt_ids=[self.prompt_ids[i] for i in indices], seeds=[self.seeds[i] for i in indices])


class Engine(ABC):
    """Who generates a policy's completions. One instance per policy (made by
    :func:`stages.model.engines.make_engine` when the policy first generates); an engine that holds
    a costly resource (a running server) shares it across instances itself."""

    uses_live_weights: bool = True
    """Generation runs on the policy's own torch modules: weights sharded across ranks are
    gathered around it (:meth:`Policy.full_weights`), and a LoRA policy may generate on its merged
    copy (``model.merge_for_generation``). False: the engine keeps its own copy of the weights,
    loaded from the policy's checkpoint (and brought up to date by the engine itself)."""

    @abstractmethod
    def generate(self, policy: Any, requests: Requests, progress: Progress | None = None) -> list[Completion]:
        """One completion per request, in input order (built with :func:`completion`)."""

    def pause(self) -> None:
        """Before the update: give accelerator memory back until the next generation (nothing by
        default)."""
        return None


def completion(tokenizer: Any, prompt_ids: list[int], ids: list[int], finish: str, stop: tuple[str, ...]) -> Completion:
    """The completion of sampled tokens ``ids`` (``finish``: ``stop``, ``eos`` or ``length``): its
    text decoded without special tokens and, when a stop string ended it, cut right after the first
    one (the last token may run a few characters past it; ``token_ids`` keeps every sampled token)."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if finish == "stop":
        hits = [(text.find(s), len(s)) for s in stop if s in text]
        if hits:
            pos, length = min(hits)
            text = text[: pos + length]
    return Completion(text, len(prompt_ids), len(ids), ids, list(prompt_ids), finish)
