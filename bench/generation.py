"""Rollout engines side by side: HF `generate` against the vLLM engine, on the same prompts, in one
run of this script.

    python bench/generation.py                    # CPU: the embedded model on the demo's prompts
    python bench/generation.py --shape 3b --json  # GPU: the Qwen2.5-Coder-3B shape at batch 64 and 256

CPU: SmolLM2-135M (configs/smollm2-cpu.yaml, LoRA with a perturbed adapter so both engines serve
one), the proposer prompts of the demo's first iteration and the solver prompts of its seed
tasks, at the config's temperature and lengths. GPU: random weights of the 3B shape (no
download), random prompts of ``--prompt`` tokens, ``--new`` new tokens each, every row made to
run its full length. Figures: tokens/s of each engine (vLLM: its first call, "cold", and a second
call on the same prompts, "warm": prefix cache hit), the engine's start-up seconds, and
``ratio_vllm_vs_hf`` (cold vLLM over HF, the conservative figure).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cpu_prompts(cfg: Any, policy: Any) -> dict[str, list[str]]:
    from stages.model.turns import render
    from stages.propose import build_queries
    from stages.rundir.buffers import group_by_type
    from stages.seed import seed_tasks
    from stages.solve import solver_query

    buffers = group_by_type(seed_tasks(cfg))
    proposer = [render(policy, q.turns) for q in build_queries(buffers, cfg, random.Random(0), 1)]
    tasks = [t for ts in buffers.values() for t in ts]
    solver = [render(policy, solver_query(f"r{i}", tasks[i % len(tasks)], "train", cfg.solve.demonstrations).turns)
              for i in range(3 * cfg.run.batch_size)]
    return {"propose": proposer, "solve": solver}


def timed(policy: Any, prompts: list[str], gen: Any, seed: int = 0) -> dict[str, Any]:
    start = time.perf_counter()
    out = policy.generate(prompts, max_new_tokens=gen.max_new_tokens, temperature=gen.temperature, top_p=gen.top_p,
                          seed=seed, batch_size=len(prompts))
    seconds = time.perf_counter() - start
    return {"tokens": out.tokens, "seconds": round(seconds, 2), "tok_per_s": round(out.tokens / seconds, 2),
            "finish": {f: sum(c.finish == f for c in out.completions) for f in ("stop", "eos", "length")}}


def cpu_bench(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from stages.config.layers import load_config
    from stages.model.engines.vllm import _ENGINES, close_all
    from stages.model.policy import load_policy

    cfg = load_config(REPO / "configs" / "smollm2-cpu.yaml")
    policy = load_policy(cfg.model, trainable=False, engine_options=cfg.engine_options())
    with torch.no_grad():  # an adapter that changes the outputs, served by both engines
        gen = torch.Generator().manual_seed(0)
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.01)
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / "azr-bench-adapter"
    policy.save(folder)
    policy.checkpoint = folder
    prompts = cpu_prompts(cfg, policy)
    out: dict[str, Any] = {"model": cfg.model.name, "torch_threads": torch.get_num_threads(),
                           "prompts": {k: len(v) for k, v in prompts.items()},
                           "prompt_tokens_mean": {k: round(sum(len(policy.encode(p)) for p in v) / len(v), 1)
                                                  for k, v in prompts.items()}}
    roles = {"propose": cfg.propose, "solve": cfg.solve}
    policy.engine = "hf"
    out["hf"] = {role: timed(policy, prompts[role], roles[role]) for role in roles}
    policy.engine = "vllm"
    start = time.perf_counter()
    timed(policy, [prompts["propose"][0]], roles["propose"].model_copy(update={"max_new_tokens": 1}))
    out["vllm_startup_s"] = round(time.perf_counter() - start, 1)
    out["vllm_startup_of_which_engine_s"] = round(next(iter(_ENGINES.values())).startup_s, 1)
    out["vllm"] = {role: {"cold": timed(policy, prompts[role], roles[role]),
                          "warm": timed(policy, prompts[role], roles[role], seed=1)} for role in roles}
    close_all()
    tok = {e: sum(out[e][r]["tokens"] if e == "hf" else out[e][r]["cold"]["tokens"] for r in roles) for e in ("hf", "vllm")}
    sec = {e: sum(out[e][r]["seconds"] if e == "hf" else out[e][r]["cold"]["seconds"] for r in roles)
           for e in ("hf", "vllm")}
    out["tok_per_s"] = {e: round(tok[e] / sec[e], 2) for e in tok}
    out["ratio_vllm_vs_hf"] = round(out["tok_per_s"]["vllm"] / out["tok_per_s"]["hf"], 2)
    return out


def gpu_bench(args: argparse.Namespace) -> dict[str, Any]:
    """The 3B shape with random weights: HF (static cache compiled) against vLLM at each batch."""
    import torch

    from bench.gpu_iteration import build_model_folder
    from stages.config.schema import ModelSection, VLLMSection
    from stages.model.engines.vllm import close_all
    from stages.model.policy import load_policy

    folder = build_model_folder(args.shape, Path(args.workdir or "/tmp/azr-gen-bench") / args.shape)
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "shape": args.shape, "new_tokens": args.new,
                           "prompt_tokens": args.prompt, "batches": {}}
    g = random.Random(1)
    for engine in ("hf", "vllm"):
        policy = load_policy(ModelSection(name=str(folder), engine=engine, compile_generation=True, prompt_format="plain"),
                             trainable=False, engine_options=VLLMSection(gpu_memory_utilization=0.5, enforce_eager=False))
        vocab = len(policy.tokenizer)
        for batch in args.batches:
            prompts = [policy.tokenizer.decode([g.randrange(10, vocab) for _ in range(args.prompt)]) for _ in range(batch)]
            config = policy.generation_config(args.new, 1.0, 1.0)
            config.min_new_tokens = args.new  # every row runs its full length
            for _ in range(2):  # the first call warms up (compiles, starts the engine)
                start = time.perf_counter()
                res = policy.generate(prompts, max_new_tokens=args.new, temperature=1.0, top_p=1.0, seed=0,
                                      batch_size=batch, stop=None)
                seconds = time.perf_counter() - start
            out["batches"].setdefault(str(batch), {})[engine] = {"tok_per_s": round(res.tokens / seconds, 1),
                                                                 "seconds": round(seconds, 2)}
        close_all()
    for r in out["batches"].values():
        r["ratio_vllm_vs_hf"] = round(r["vllm"]["tok_per_s"] / r["hf"]["tok_per_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", help="GPU: a model shape of bench/gpu_iteration.py (3b)")
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--workdir")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = gpu_bench(args) if args.shape else cpu_bench(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
