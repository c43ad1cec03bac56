"""What an exact resume needs besides the weights: the optimizer (built over the policy and the
algorithm's own parameters), its state, and every RNG's state."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from stages.config.schema import UpdateSection
    from stages.training.algorithms import Algorithm

TRAINING_STATE_FILE = "training_state.pt"


def _adamw8bit() -> type[torch.optim.Optimizer]:
    import bitsandbytes as bnb

    return bnb.optim.AdamW8bit


OPTIMIZERS: dict[str, Any] = {"adamw": lambda: torch.optim.AdamW, "adamw8bit": _adamw8bit}
"""``update.optimizer`` -> the optimizer class (imported when asked for)."""


def build_optimizer(params: Any, cfg: UpdateSection, algorithm: Algorithm | None = None) -> torch.optim.Optimizer:
    """AdamW or bitsandbytes AdamW8bit over the trainable ``params`` (lr ``cfg.lr``), plus the
    algorithm's own parameter groups (PPO's value head at its ``value_lr``)."""
    groups = [{"params": [p for p in params if p.requires_grad], "lr": cfg.lr, "name": "policy"}]
    if not groups[0]["params"]:
        raise ValueError("no trainable parameters: with LoRA, build the optimizer on the peft model")
    if algorithm is not None:
        groups += algorithm.param_groups()
    return OPTIMIZERS[cfg.optimizer]()(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _rng_state(rng: random.Random | None) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if rng is not None:
        state["rng"] = rng.getstate()
    with contextlib.suppress(ImportError):
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = (name, keys.tolist(), pos, has_gauss, cached)
    return state


def _set_rng_state(state: dict[str, Any], rng: random.Random | None) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if rng is not None and "rng" in state:
        rng.setstate(_as_tuple(state["rng"]))
    if "numpy" in state:
        with contextlib.suppress(ImportError):
            import numpy as np

            name, keys, pos, has_gauss, cached = state["numpy"]
            np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def save_training_state(
    directory: str | Path,
    optimizer: torch.optim.Optimizer,
    algorithm: Algorithm | None = None,
    rng: random.Random | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> None:
    """Write what an exact resume needs besides the model weights into ``directory``: the
    optimizer state (``optimizer_state``: the whole one gathered from sharded ranks), the RNG
    states (torch, CUDA, python's global and ``rng``, numpy) and the algorithm's own parameters
    (PPO's ``value_head.safetensors``, beside the adapter)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = optimizer_state if optimizer_state is not None else optimizer.state_dict()
    torch.save({"optimizer": state, "rng": _rng_state(rng)}, directory / TRAINING_STATE_FILE)
    if algorithm is not None:
        algorithm.save(directory)


def load_training_state(
    directory: str | Path,
    optimizer: torch.optim.Optimizer,
    algorithm: Algorithm | None = None,
    rng: random.Random | None = None,
) -> None:
    """Restore what :func:`save_training_state` wrote, in place. The optimizer must be built over
    the same parameters in the same order (e.g. by :func:`build_optimizer` on the reloaded model);
    over parameters sharded by FSDP, each rank keeps its shard of the whole state."""
    from stages.training.sharding import local_optimizer_state

    directory = Path(directory)
    state = torch.load(directory / TRAINING_STATE_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(local_optimizer_state(optimizer, state["optimizer"]))
    if algorithm is not None:
        algorithm.load(directory)
    _set_rng_state(state["rng"], rng)
