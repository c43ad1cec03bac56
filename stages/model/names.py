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


BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
"""CPU flags that mean bfloat16 matrix products run natively (oneDNN uses them)."""


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively (AMX or AVX-512 BF16), read from /proc/cpuinfo."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return any(f in flags for f in BF16_CPU_FLAGS)


def pick_dtype(requested: str, device: str, cpu_bf16: bool | None = None) -> torch.dtype:
    """``auto``: bfloat16 on CUDA, float32 on a CPU. ``auto-bf16``: bfloat16 on CUDA and on a CPU
    that computes it natively (:func:`cpu_has_bf16`), float32 on any other CPU (emulated bf16 is
    slower than fp32 there)."""
    import torch

    if requested == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    if requested == "auto-bf16":
        native = device == "cuda" or (cpu_has_bf16() if cpu_bf16 is None else cpu_bf16)
        return torch.bfloat16 if native else torch.float32
    return getattr(torch, requested)
