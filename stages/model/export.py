"""`azr export`: the policy after iteration N as a plain transformers folder (adapter merged),
ready for `from_pretrained` or a hub upload. How an adapter is merged is the adapter kind's
business (a QLoRA adapter merges into the base loaded in full precision)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stages.errors import RunError
from stages.model.adapters import ADAPTERS
from stages.rundir.atomic import atomic_folder
from stages.rundir.jsonl import write_json
from stages.rundir.run import Run


def latest_checkpoint(run: Run) -> int:
    done = run.checkpoints()
    if not done:
        raise RunError(f"{run.path} has no checkpoint yet; run `azr update` (or `azr loop`) first")
    return done[-1]


def run(run: Run, n: int | None, out: Path, force: bool = False) -> dict[str, Any]:
    from stages.model.policy import load_policy

    n = latest_checkpoint(run) if n is None else n
    ckpt = run.checkpoint_dir(n)
    if not (ckpt / "meta.json").is_file():
        raise RunError(f"no checkpoint for iteration {n} in {run.path} (retention may have removed it)")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise RunError(f"{out} exists and is not empty; choose another --out or pass --force")
    kind = ADAPTERS[run.config.model.adapter]
    policy = load_policy(kind.for_export(run.config.model), adapter_dir=ckpt, trainable=False)
    model = kind.merged(policy)
    info = {"run": str(run.path), "iteration": n, "base_model": run.config.model.name,
            "adapter": run.config.model.adapter, "config_digest": run.config.digest()}
    with atomic_folder(out, replace=True) as tmp:
        model.save_pretrained(tmp)
        policy.tokenizer.save_pretrained(tmp)
        write_json(tmp / "azr_export.json", info)
    return {**info, "out": str(out)}
