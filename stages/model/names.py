"""Which model, where, in what precision: a name resolved to a loadable folder or hub id, the
device and the compute dtype."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stages.errors import ModelError

if TYPE_CHECKING:
    import torch


def resolve_model(name: str) -> str:
    """A loadable location for ``name``: the cache folder of a built-in (built on first use), a
    local folder, or a hub id passed through (whether it loads offline is found out on loading)."""
    from stages.model import builtins

    if name.startswith("builtin:"):
        return str(builtins.ensure_builtin(name))
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local or path.exists():
        raise ModelError(
            f"model '{name}' is not a model folder; give a local folder with config.json, a hub id "
            f"(org/name), or a built-in ({', '.join(builtins.builtin_names())})"
        )
    return name


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelError("model.device is 'cuda' but no CUDA GPU is visible; use --set model.device=cpu")
    return requested


def pick_dtype(requested: str, device: str) -> torch.dtype:
    import torch

    if requested == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, requested)
