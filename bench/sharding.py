"""Training state per rank: full fine-tuning of the embedded SmolLM2-135M on one process against
FSDP on two ranks (gloo, CPU), the same update on the same batch.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/sharding.py [--json] [--steps 2]

Each side runs in its own ``torchrun`` (the baseline: one process, nothing sharded). Per rank it
counts the bytes of the weights, the gradients (after the last backward, before they are freed)
and AdamW's state that the rank holds, and the process's peak RSS (which includes loading the
whole model before it is sharded: every rank reads it from disk). ``held_ratio`` is one process's
training state over a rank's. Times are the last step's and are noisy on a shared host; the
ratio that matters here is memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH, PROMPT, RESPONSE = 8, 32, 96


def _bytes(tensors) -> int:
    from torch.distributed.tensor import DTensor

    return sum((t.to_local() if isinstance(t, DTensor) else t).nbytes for t in tensors)


def worker(out: str, steps: int) -> None:
    """One rank: load, shard when there are several, step, count."""
    import torch

    from stages import parallel
    from stages.config.schema import ModelSection, UpdateSection
    from stages.model.policy import load_policy
    from stages.training.batch import TokenSample
    from stages.training.state import build_optimizer
    from stages.training.step import update_step

    parallel.init()
    policy = load_policy(ModelSection(name="builtin:smollm2-135m", adapter="full"), trainable=True)
    if parallel.active():
        policy.shard()
    cfg = UpdateSection(lr=1e-6, micro_batch_size=2, logprob_chunk=128, entropy_coef=0.001)
    optimizer = build_optimizer(policy.trainable_parameters(), cfg)
    g = random.Random(0)
    vocab = policy.tokenizer.vocab_size
    batch = [TokenSample(prompt_ids=[g.randrange(vocab) for _ in range(PROMPT)],
                         response_ids=[g.randrange(vocab) for _ in range(RESPONSE)],
                         advantage=g.uniform(-1, 1), reward=0.0) for _ in range(BATCH)]
    grads = 0
    orig = optimizer.step

    def counting_step(*a, **k):  # the gradients are freed after the step: count them just before
        nonlocal grads
        grads = _bytes(p.grad for p in policy.trainable_parameters() if p.grad is not None)
        return orig(*a, **k)

    optimizer.step = counting_step
    seconds = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        update_step(policy.model, batch, cfg, optimizer, pad_id=0, compute=policy.compute,
                    ranks=parallel.gradient_sum(policy.sharded))
        seconds = time.perf_counter() - start
    weights = _bytes(policy.model.parameters())
    state = _bytes(v for s in optimizer.state.values() for k, v in s.items() if k != "step")
    row = {"rank": parallel.rank(), "world": parallel.world_size(), "weights_mb": weights / 2**20,
           "grads_mb": grads / 2**20, "optimizer_mb": state / 2**20,
           "held_mb": (weights + grads + state) / 2**20,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "step_s": seconds}
    Path(out, f"{parallel.world_size()}-{parallel.rank()}.json").write_text(json.dumps(row))
    if parallel.active():
        import torch.distributed as dist

        dist.destroy_process_group()
    del torch


def _launch(k: int, out: str, steps: int) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // k)),
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(k),
           __file__, "--worker", out, "--steps", str(steps)]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.steps)
        return
    with tempfile.TemporaryDirectory() as out:
        for k in (1, 2):
            _launch(k, out, args.steps)
        rows = [json.loads(p.read_text()) for p in sorted(Path(out).glob("*.json"))]
    one = next(r for r in rows if r["world"] == 1)
    two = [r for r in rows if r["world"] == 2]
    result = {"machine": f"{platform.machine()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
              "model": "builtin:smollm2-135m full fine-tuning, fp32", "batch": f"{BATCH} x {PROMPT}+{RESPONSE}",
              "one_process": one, "fsdp_2_ranks": two,
              "held_ratio": one["held_mb"] / max(r["held_mb"] for r in two)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['model']}, batch {result['batch']}, {result['machine']}")
    print(f"{'':14} {'weights':>9} {'grads':>9} {'AdamW':>9} {'held':>9} {'peak RSS':>9} {'step':>7}")
    for r in [one, *two]:
        name = "1 process" if r["world"] == 1 else f"FSDP rank {r['rank']}"
        print(f"{name:14} {r['weights_mb']:8.0f}M {r['grads_mb']:8.0f}M {r['optimizer_mb']:8.0f}M "
              f"{r['held_mb']:8.0f}M {r['peak_rss_mb']:8.0f}M {r['step_s']:6.2f}s")
    print(f"training state held per rank: {result['held_ratio']:.2f}x less on 2 ranks")


if __name__ == "__main__":
    main()
