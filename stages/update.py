"""`azr update`: one optimizer step on the 6 × B scored samples of the iteration, then a checkpoint.

TRR++ (default): the PPO-clip surrogate with the per-(type, role) advantages from `azr reward`,
the same advantage on every token. PPO: a value head and GAE advantages from the same rewards.
The checkpoint (`checkpoints/N/`: adapter or weights, optimizer + RNG state, meta.json) is written
before the stage folder, so a completed update always has its checkpoint.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from stages.errors import RunError
from stages.method.tasks import derive_seed
from stages.model.engines.base import Progress
from stages.rundir.atomic import atomic_folder, remove_stale
from stages.rundir.jsonl import write_json
from stages.rundir.layout import PROPOSALS, ROLLOUTS, SAMPLES
from stages.rundir.records import StageSummary
from stages.rundir.run import Run
from stages.session import Session


def training_samples(run: Run, n: int) -> list[Any]:
    """The iteration's samples joined by id with the token ids of their responses."""
    from stages.training.batch import TokenSample

    cfg = run.config
    tokens: dict[str, tuple[list[int], list[int], float, bool]] = {}
    for p in run.records(n, PROPOSALS):
        tokens[p.proposal_id] = (p.prompt_ids, p.completion_ids, cfg.propose.temperature, p.finish == "length")
    for r in run.records(n, ROLLOUTS):
        tokens[r.rollout_id] = (r.prompt_ids, r.completion_ids, cfg.solve.temperature, r.finish == "length")
    out = []
    for s in run.records(n, SAMPLES):
        prompt_ids, response_ids, temperature, truncated = tokens[s.sample_id]
        group = f"{s.type}/{s.role}" + (f"/{s.purpose}" if s.purpose is not None else "")
        if response_ids:
            out.append(TokenSample(prompt_ids=prompt_ids, response_ids=response_ids, advantage=s.advantage,
                                   reward=s.reward, temperature=temperature, group=group, truncated=truncated))
    return out


def kept_checkpoints(iterations: list[int], keep_last: int, keep_every: int) -> set[int]:
    """Retention: the last k, and every m-th iteration."""
    last = set(sorted(iterations)[-keep_last:])
    every = {i for i in iterations if keep_every and i % keep_every == 0}
    return last | every


def save_checkpoint(run: Run, n: int, session: Session, stats: dict[str, Any],
                    gathered: tuple[dict[str, Any], dict[str, Any]] | None = None) -> None:
    """Write checkpoints/N/ through a temporary folder. Under the run lock, every leftover of an
    earlier write that was killed or failed (a full disk) is removed first, so retries never pile
    up copies of the weights. ``gathered``: the whole (weights, optimizer state) of a policy
    sharded across ranks, written in the layout one process writes."""
    from stages.training.state import save_training_state

    final = run.checkpoint_dir(n)
    meta = {"iteration": n, "config_digest": run.config.digest(), "base_model": run.config.model.name,
            "adapter": run.config.model.adapter, "algorithm": run.config.update.algorithm.name, "stats": stats}
    with run.writing():
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(final.parent, ".*")
        try:
            with atomic_folder(final, replace=True) as tmp:
                session.policy.save(tmp, gathered[0] if gathered else None)
                save_training_state(tmp, session.optimizer, session.algorithm,
                                    optimizer_state=gathered[1] if gathered else None)
                write_json(tmp / "meta.json", meta)
        except (OSError, RuntimeError) as e:
            raise RunError(f"cannot write checkpoint {final}: {_write_cause(final.parent, e)}") from None


def _write_cause(folder: Path, e: BaseException) -> str:
    """A plain cause for a failed write: torch reports a full disk as 'unexpected pos …'."""
    free = shutil.disk_usage(folder).free
    if isinstance(e, OSError) and e.strerror:
        cause = e.strerror
    else:
        cause = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
    return f"{cause} ({free / 2**30:.1f} GiB free on that filesystem); free some space and rerun the update"


def prune_checkpoints(run: Run) -> None:
    """Apply retention. Called only once the update stage is complete, so that a crash between
    writing checkpoint N and completing the stage never loses checkpoint N−1 (its starting point)."""
    u = run.config.update
    with run.writing():
        done = run.checkpoints()
        for i in set(done) - kept_checkpoints(done, u.keep_last, u.keep_every):
            shutil.rmtree(run.checkpoint_dir(i), ignore_errors=True)


def train(run: Run, n: int, session: Session) -> tuple[list[Any], dict[str, Any], Any]:
    """Iteration n's optimizer step on the session's policy: (samples, stats, gathered). Under
    several ranks every rank runs it (rank 0 announces it first), each on its share of the
    micro-batches; a sharded policy's whole weights and optimizer state are then gathered to rank 0
    (``gathered``; None on the other ranks, and when nothing is sharded)."""
    import torch

    from stages import parallel
    from stages.training.step import update_step

    samples = training_samples(run, n)
    policy, optimizer, algorithm = session.trainer_for(n)  # first: it opens the session on every rank
    parallel.announce_update(n)
    policy.pause_engine()
    torch.manual_seed(derive_seed(run.config.run.seed, n, "update"))
    pad = policy.tokenizer.pad_token_id if policy.tokenizer.pad_token_id is not None else 0
    try:
        stats = update_step(policy.model, samples, run.config.update, optimizer, algorithm, pad_id=pad,
                            reference=policy.reference, compute=policy.compute,
                            ranks=parallel.gradient_sum(policy.sharded)).to_dict()
    except FloatingPointError as e:
        raise RunError(f"update of iteration {n}: {e}; no checkpoint was written (lower update.lr, "
                       "or check the iteration's samples with `azr inspect`)") from None
    gathered = None
    if policy.sharded:
        from stages.training.sharding import full_state, local_numel

        stats["weights_held"] = local_numel(policy.model) / sum(p.numel() for p in policy.model.parameters())
        gathered = full_state(policy.model, optimizer)
    return samples, stats, gathered


def run(run: Run, n: int, session: Session, *, force: bool = False,
        progress: Progress | None = None) -> StageSummary:
    """Write checkpoints/N/ and iters/N/update/summary.json."""
    started = time.perf_counter()
    samples, stats, gathered = train(run, n, session)
    save_checkpoint(run, n, session, stats, gathered)
    del gathered
    session.advance(n)
    stats["step_seconds"] = stats.pop("seconds")  # the stage's own `seconds` covers the whole stage
    summary = StageSummary(count=len(samples), metrics={k: v for k, v in stats.items() if v is not None})
    summary = run.write_stage(n, "update", {}, summary, force=force, started=started)
    prune_checkpoints(run)
    return summary
