"""Several processes on one run, started by ``torchrun`` or ``accelerate launch`` (which sets the
same environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT): data parallelism.

Rank 0 drives: it runs the command exactly as a single process would, and it alone writes the run
directory (the run lock, the stage folders, checkpoints, metrics) and runs the sandbox. Every other
rank *serves*: it opens the same run read-only and waits for rank 0's requests, of two kinds:

- **generate**: the requests of one call (prompts encoded, per-request seeds). Rank 0's policy
  hands its calls to :class:`stages.model.engines.sharded.Sharded`, which wraps the policy's
  engine: request ``i`` goes to rank ``i mod K``; each rank completes its share with its own
  engine and the policy of the same iteration (:func:`stages.model.engines.sharded.share_of`),
  and rank 0 gathers the completions back into input order. A
  request's completion depends on its prompt and seed only
  (:func:`~stages.model.generation.request_seed`), so the records do not depend on K.
- **update**: the iteration's update. Every rank reads the iteration's samples from the run
  directory, builds the same micro-batches and advantages, and backpropagates its share of the
  micro-batches (``j mod K``); the gradients are summed across ranks (all-reduce) before clipping,
  so each rank takes the same optimizer step and the weights stay identical everywhere. That is
  what DDP does with ``no_sync`` accumulation, written out: one all-reduce per optimizer step, and
  ranks may hold different numbers of micro-batches (DDP's hooks need the same number of passes).
  Full fine-tuning is sharded instead (``update.sharding``, :mod:`stages.training.sharding`): FSDP
  reduce-scatters the gradients, every rank makes the same number of passes, and rank 0 gathers
  the whole weights and optimizer state to write the checkpoint.

A serving rank (:mod:`stages.serve`) keeps its policy in memory across iterations exactly as rank
0's session does; it never writes a file. Objects travel over a gloo group (CPU), gradients over the default group
(NCCL on GPUs, gloo on a CPU). A rank that dies takes the others down with it (torchrun stops the
whole group when one worker fails); rank 0's writes are atomic, so the same command resumes.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

_GROUP: Any = None
"""The gloo group requests travel on (None until :func:`init`)."""
_ATTACHED: tuple[str, str] | None = None
"""(run path, config digest) of the session the serving ranks hold."""


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def active() -> bool:
    """Whether this process is one of several ranks of one run."""
    return world_size() > 1


def driving() -> bool:
    """Rank 0 of several (it sends requests); False in a single process and on serving ranks."""
    return active() and rank() == 0 and _GROUP is not None


def init() -> None:
    """Join the process group (once). On GPUs each rank takes the card LOCAL_RANK."""
    global _GROUP
    if not active() or _GROUP is not None:
        return
    import torch
    import torch.distributed as dist

    minutes = int(os.environ.get("AZR_DIST_TIMEOUT_MIN", "120"))
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=timedelta(minutes=minutes))
    _GROUP = dist.new_group(backend="gloo", timeout=timedelta(minutes=minutes)) if backend != "gloo" else dist.group.WORLD


def shard(n: int, r: int | None = None, k: int | None = None) -> list[int]:
    """The indices of ``n`` items that rank ``r`` of ``k`` takes: ``i mod k == r``."""
    r, k = rank() if r is None else r, world_size() if k is None else k
    return list(range(r, n, k))


def merge(shares: list[list[Any]], n: int) -> list[Any]:
    """The items of every rank's share (rank ``r`` holds those of :func:`shard` (n, r, k)), back in order."""
    k = len(shares)
    out: list[Any] = [None] * n
    for r, items in enumerate(shares):
        for i, item in zip(shard(n, r, k), items, strict=True):
            out[i] = item
    return out


def send(message: tuple[Any, ...]) -> None:
    import torch.distributed as dist

    dist.broadcast_object_list([message], src=0, group=_GROUP)


def receive() -> tuple[Any, ...]:
    import torch.distributed as dist

    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=0, group=_GROUP)
    return box[0]


def gather(share: Any) -> list[Any] | None:
    import torch.distributed as dist

    every: list[Any] | None = [None] * world_size() if rank() == 0 else None
    dist.gather_object(share, every, dst=0, group=_GROUP)
    return every


# ------------------------------------------------------------------------------------ rank 0


def attach(run: Any) -> None:
    """Rank 0's session on ``run``: the serving ranks open the same run (with the same config,
    runtime overrides included) before the first request."""
    global _ATTACHED
    if not driving():
        return
    import json

    key = (str(Path(run.path).resolve()), json.dumps(run.config.to_dict(), sort_keys=True, default=str))
    if key != _ATTACHED:
        send(("session", key[0], run.config.to_dict()))
        _ATTACHED = key


def detach() -> None:
    global _ATTACHED
    if driving() and _ATTACHED is not None:
        send(("close",))
        _ATTACHED = None


def announce_update(n: int) -> None:
    """Rank 0 is about to run iteration n's update: every rank joins it."""
    if driving():
        send(("update", n))


_STOPPED = False


def stop(code: int) -> None:
    """Rank 0's command is over: the serving ranks exit with its code (once; called as the command
    ends, before the exit handlers of libraries that tear the process group down, vLLM's among
    them, and again from an exit handler of ours in case the command ended another way)."""
    global _STOPPED
    if driving() and not _STOPPED:
        _STOPPED = True
        with contextlib.suppress(Exception):  # a rank already gone: torchrun stops the rest
            send(("stop", code))
            leave()


def leave() -> None:
    """Every rank, at the end: wait until all have their last message, then close the group (a
    process that exits with the group open can abort in gloo's threads as they are torn down)."""
    global _GROUP
    import torch.distributed as dist

    if _GROUP is None or not dist.is_initialized():
        return
    with contextlib.suppress(Exception):
        dist.barrier(group=_GROUP)
    with contextlib.suppress(Exception):
        dist.destroy_process_group()
    _GROUP = None


# ------------------------------------------------------------------------------------ every rank


class GradientSum:
    """The update's all-reduce: rank ``rank`` of ``world`` sums gradients and loss terms."""

    def __init__(self, sharded: bool = False) -> None:
        self.rank, self.world = rank(), world_size()
        self.sharded = sharded
        """The policy is sharded by FSDP, which sums its gradients itself (reduce-scatter)."""

    def mine(self, items: list[Any]) -> list[Any]:
        return [items[j] for j in shard(len(items), self.rank, self.world)]

    def passes(self, items: list[Any]) -> int:
        """The most items any rank takes."""
        return -(-len(items) // self.world)

    def all_reduce(self, params: list[Any], sums: dict[str, float], device: Any = None) -> None:
        """Sum every parameter's gradient (a missing one counts as zeros) and the loss sums: the
        gradients in flat buckets of at most BUCKET_BYTES per dtype and device (few collectives,
        a bounded extra copy)."""
        import torch
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        for bucket in _buckets(params):
            flat = torch.cat([p.grad.reshape(-1) for p in bucket])
            dist.all_reduce(flat)
            offset = 0
            for p in bucket:
                p.grad.copy_(flat[offset : offset + p.grad.numel()].view_as(p.grad))
                offset += p.grad.numel()
        keys = sorted(sums)
        device = device if device is not None else params[0].device if params else "cpu"
        totals = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(totals)
        for k, v in zip(keys, totals.tolist(), strict=True):
            sums[k] = v


BUCKET_BYTES = 256 << 20


def _buckets(params: list[Any]) -> list[list[Any]]:
    """Consecutive parameters of one dtype and device, up to BUCKET_BYTES of gradient each."""
    out: list[list[Any]] = []
    size, key = 0, None
    for p in params:
        k, nbytes = (p.grad.dtype, p.grad.device), p.grad.numel() * p.grad.element_size()
        if not out or k != key or size + nbytes > BUCKET_BYTES:
            out.append([])
            size, key = 0, k
        out[-1].append(p)
        size += nbytes
    return out


def sharding(config: Any) -> str:
    """How this process's update holds the model: ``fsdp`` (full fine-tuning on several ranks,
    ``update.sharding`` auto or fsdp: :mod:`stages.training.sharding`) or ``replicate``."""
    if not (active() and _GROUP is not None) or config.update.sharding == "replicate":
        return "replicate"
    return "fsdp" if config.model.adapter == "full" else "replicate"


def gradient_sum(sharded: bool = False) -> GradientSum | None:
    """The all-reduce for this process's update, or None in a single process."""
    return GradientSum(sharded) if active() and _GROUP is not None else None
