"""The rollout engines behind one interface (:class:`~stages.model.engines.base.Engine`), and
their registry: ``model.engine`` names one of :data:`ENGINES`.

- ``hf`` (:mod:`stages.model.engines.hf`): transformers ``generate`` on the policy's own model;
- ``vllm`` (:mod:`stages.model.engines.vllm`): a running ``vllm.LLM`` serving the policy's checkpoint.

Adding an engine is one module (a subclass of :class:`Engine`) and one line below; the config
accepts its name from then on (``model.engine`` is checked against this registry). Entries are
``"module:Class"`` paths, imported on first use, so that validating a config or ``azr --help``
imports no engine (nor torch); a class may be registered directly too (tests do).
"""

from __future__ import annotations

import importlib

from stages.errors import ModelError
from stages.model.engines.base import Engine, Requests, completion

__all__ = ["ENGINES", "Engine", "Requests", "completion", "engine_class", "make_engine"]

ENGINES: dict[str, str | type[Engine]] = {
    "hf": "stages.model.engines.hf:HFEngine",
    "vllm": "stages.model.engines.vllm:VLLMEngine",
}
"""Engine name (what ``model.engine`` takes) -> its class, or the ``module:Class`` path of it."""


def engine_class(name: str) -> type[Engine]:
    """The class of the engine named ``name`` (its module imported now)."""
    if name not in ENGINES:
        raise ModelError(f"unknown rollout engine {name!r} (known: {', '.join(ENGINES)}); set model.engine to one")
    entry = ENGINES[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
    return entry


def make_engine(name: str) -> Engine:
    """A new engine of the kind ``name`` (one per policy)."""
    return engine_class(name)()
