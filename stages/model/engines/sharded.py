"""Generation under several ranks (torchrun): an engine on every rank, each on its share of a
call. Rank 0's policy completes a call through :class:`Sharded`, which wraps its engine; a serving
rank answers with :func:`share_of`. The messages and collectives are :mod:`stages.parallel`'s."""

from __future__ import annotations

from typing import Any

from stages import parallel
from stages.model.engines.base import Engine, Progress, Requests
from stages.model.generation import Completion


class Sharded(Engine):
    """Rank 0's engine under several ranks: an engine on every rank, each on its share of a call.
    It sends the call to the serving ranks (which answer with :func:`share_of`), completes its own
    share with ``inner`` (this rank's engine), and gathers the completions back into input order."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.uses_live_weights = inner.uses_live_weights

    def generate(self, policy: Any, requests: Requests, progress: Progress | None = None) -> list[Completion]:
        parallel.send(("generate", policy.iteration, requests.prompt_ids, requests.seeds, requests.options()))
        shares = parallel.gather(_complete_share(policy, self.inner, requests))
        assert shares is not None
        out = parallel.merge(shares, len(requests))
        if progress is not None:
            progress(len(requests), len(requests))
        return out

    def pause(self) -> None:
        self.inner.pause()


def share_of(policy: Any, prompt_ids: list[list[int]], seeds: list[int], options: dict[str, Any]) -> list[Any]:
    """A serving rank's completions of one call from rank 0 (:class:`Sharded`): its share, by
    its policy's engine."""
    return _complete_share(policy, policy.engine_impl, Requests.with_options(prompt_ids, seeds, options))


def _complete_share(policy: Any, engine: Engine, requests: Requests) -> list[Any]:
    """This rank's completions of one call; every rank calls it (sharded weights are gathered)."""
    mine = parallel.shard(len(requests))
    with policy.full_weights():
        if not mine:
            return []
        return engine.generate(policy, requests.select(mine))
