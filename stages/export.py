"""`azr export`: the policy after iteration N as a plain transformers folder (adapter merged),
ready for `from_pretrained` or a hub upload.

A QLoRA adapter is merged into the base loaded in full precision (merging into 4-bit weights would
round the update away), so the exported model is the base + the trained low-rank update.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from stages.rundir import Run, RunError, write_json


def latest_checkpoint(run: Run) -> int:
    root = run.path / "checkpoints"
    done = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.is_dir() else []
    if not done:
        raise RunError(f"{run.path} has no checkpoint yet; run `azr update` (or `azr loop`) first")
    return done[-1]


def run(run: Run, n: int | None, out: Path, force: bool = False) -> dict[str, Any]:
    from stages.model import load_policy

    n = latest_checkpoint(run) if n is None else n
    ckpt = run.checkpoint_dir(n)
    if not (ckpt / "meta.json").is_file():
        raise RunError(f"no checkpoint for iteration {n} in {run.path} (retention may have removed it)")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise RunError(f"{out} exists and is not empty; choose another --out or pass --force")
    cfg = run.config.model
    if cfg.adapter == "qlora":
        cfg = cfg.model_copy(update={"adapter": "lora", "dtype": "float32" if cfg.dtype == "auto" else cfg.dtype})
    policy = load_policy(cfg, adapter_dir=ckpt, trainable=False)
    model = policy.model.merge_and_unload() if hasattr(policy.model, "merge_and_unload") else policy.model
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    policy.tokenizer.save_pretrained(tmp)
    info = {"run": str(run.path), "iteration": n, "base_model": run.config.model.name,
            "adapter": run.config.model.adapter, "config_digest": run.config.digest()}
    write_json(tmp / "azr_export.json", info)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return {**info, "out": str(out)}
