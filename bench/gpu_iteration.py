"""One full AZR iteration on the Qwen2.5-Coder-3B shape with random weights: the GPU check.

    .venv/bin/python bench/gpu_iteration.py                      # 3B shape on CUDA (no download)
    .venv/bin/python bench/gpu_iteration.py --shape tiny --device cpu --json   # same code, seconds

What it does, all through the real code (``stages.seed/loop``, ``stages.model``, ``stages.training.step``):

1. Builds a model folder: ``Qwen2Config`` written by hand for the shape (3b: hidden 2048, 36
   layers, 16 heads, 2 kv heads, intermediate 11008, vocab 151936, tied embeddings) with random
   weights, and the built-in tiny tokenizer; for the 3b shape its vocabulary is padded with
   filler tokens up to the model's 151936 so that every sampled id decodes (the stop-string
   criterion indexes a table by token id).
2. For each ``--variants`` (default ``qlora,lora``): a fresh run (identity seeds, ``--batch`` B,
   small K/N/n) and one iteration propose → validate → solve → reward → update through
   ``stages.loop.run``; per stage: seconds, tokens/s (generation stages) and peak GPU memory
   (``torch.cuda.max_memory_allocated``, reset at each stage; none on CPU). The lora variant uses
   ``model.compile_generation`` (static cache + compiled decode) on CUDA.
3. Generation throughput side by side on the LoRA policy at batch ``--gen-batch`` (64): eager
   ``generate`` vs the static-cache path, every row forced to ``--gen-tokens`` new tokens; the
   static path's first call (compilation) is timed apart from a second, measured call. On CPU
   transformers does not compile, so "static" there is the static cache alone.
4. The QLoRA update's peak memory on ``--update-rows`` x ``--update-len`` tokens (8 x 1024):
   one ``update_step`` with the run's update settings (128-position log-prob chunks).

Timings on a shared CPU host vary several-fold; the CPU tiny run checks that the code path works.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES: dict[str, dict[str, Any]] = {
    # Qwen/Qwen2.5-Coder-3B's config.json, written out (no download)
    "3b": dict(hidden_size=2048, num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
               intermediate_size=11008, vocab_size=151936, max_position_embeddings=32768,
               rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
    # same code path in seconds on a CPU (the tokenizer's own vocabulary)
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=None, max_position_embeddings=4096,
                 tie_word_embeddings=True),
}
# per shape: B, new tokens per role, generation batch, side-by-side batch/prompt/new tokens,
# update rows x length
DEFAULTS: dict[str, dict[str, int]] = {
    "3b": dict(batch=4, max_new=256, gen_batch=64, bench_batch=64, bench_prompt=256, bench_new=256,
               update_rows=8, update_len=1024),
    "tiny": dict(batch=2, max_new=16, gen_batch=8, bench_batch=64, bench_prompt=16, bench_new=8,
                 update_rows=8, update_len=64),
}


# ----------------------------------------------------------------------------- the model folder


def build_model_folder(shape: str, folder: Path) -> Path:
    """A loadable folder: random weights of ``shape`` and the built-in tiny tokenizer (padded)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.utils import logging as hf_logging

    from stages.model.names import resolve_model

    hf_logging.disable_progress_bar()
    folder.mkdir(parents=True, exist_ok=True)
    tok_src = Path(resolve_model("builtin:tiny"))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tok_src / name).exists():
            shutil.copy(tok_src / name, folder / name)
    spec = dict(SHAPES[shape])
    tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = spec["vocab_size"] or tokenizer_size(tok)
    spec["vocab_size"] = vocab
    pad_tokenizer(tok, vocab)
    (folder / "tokenizer.json").write_text(json.dumps(tok), encoding="utf-8")
    special = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
    tcfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    eos = special.get(tcfg.get("eos_token") or "")
    pad = special.get(tcfg.get("pad_token") or "", eos)
    config = Qwen2Config(**spec, bos_token_id=None, eos_token_id=eos, pad_token_id=pad)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() and shape != "tiny" else "cpu"
    with torch.device(device):  # built where it runs: 3B random weights in seconds on a GPU
        model = Qwen2ForCausalLM._from_config(config, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    model.save_pretrained(folder)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return folder


def tokenizer_size(tok: dict[str, Any]) -> int:
    ids = list(tok["model"]["vocab"].values()) + [t["id"] for t in tok.get("added_tokens", [])]
    return max(ids) + 1


def pad_tokenizer(tok: dict[str, Any], size: int) -> int:
    """Add filler tokens (lower-case letter strings the byte-level decoder maps to themselves) to a
    tokenizer.json's vocabulary until it has ``size`` ids; returns how many were added."""
    vocab: dict[str, int] = tok["model"]["vocab"]
    used = set(vocab) | {t["content"] for t in tok.get("added_tokens", [])}
    next_id = tokenizer_size(tok)
    added = 0
    letters = "abcdefghijklmnopqrstuvwxyz"
    for width in itertools.count(3):
        if next_id >= size:
            break
        for chars in itertools.product(letters, repeat=width):
            if next_id >= size:
                break
            s = "".join(chars)
            if s not in used:
                vocab[s] = next_id
                next_id += 1
                added += 1
    return added


# ----------------------------------------------------------------------------- measurements


def _cuda() -> Any:
    import torch

    return torch.cuda if torch.cuda.is_available() else None


def _peak_mib() -> float | None:
    cuda = _cuda()
    return round(cuda.max_memory_allocated() / 2**20, 1) if cuda else None


def _reset_peak() -> None:
    cuda = _cuda()
    if cuda:
        cuda.synchronize()
        cuda.reset_peak_memory_stats()


def _release() -> None:
    import gc

    gc.collect()
    cuda = _cuda()
    if cuda:
        cuda.empty_cache()


def run_config(folder: Path, adapter: str, device: str, args: argparse.Namespace) -> Any:
    from stages.config.schema import Config

    compile_gen = adapter == "lora" and device == "cuda"
    return Config.model_validate({
        "run": {"batch_size": args.batch, "seed": 0},
        "seed": {"grow": False},  # one iteration's figures: no seeding phase before it
        "model": {"name": str(folder), "adapter": adapter, "device": device, "compile_generation": compile_gen},
        "propose": {"references": 2, "induction_inputs": 4, "max_new_tokens": args.max_new,
                    "generation_batch_size": args.gen_batch},
        "solve": {"rollouts": 2, "max_new_tokens": args.max_new, "generation_batch_size": args.gen_batch},
        "reward": {"format": "blocks"},
        "update": {"micro_batch_size": 8, "logprob_chunk": 128},
        "log": {"tensorboard": False},
    })


def one_iteration(workdir: Path, cfg: Any) -> tuple[dict[str, Any], Any]:
    """Seed a run and complete iteration 1; per-stage figures, and the open session."""
    from stages import loop, seed
    from stages.session import Session

    run = seed.run(workdir / f"run-{cfg.model.adapter}", cfg)
    session = Session(run)
    stages: dict[str, dict[str, Any]] = {}
    marks: dict[str, float] = {}

    def on_event(e: dict[str, Any]) -> None:
        if e["event"] == "start":
            _reset_peak()
            marks[e["stage"]] = time.perf_counter()
            return
        metrics = e["summary"].metrics
        row: dict[str, Any] = {"seconds": round(e["seconds"], 2), "peak_gpu_mib": _peak_mib()}
        for key in ("tokens", "tokens_per_s"):
            if key in metrics:
                row[key] = metrics[key]
        if "tokens" in row and "tokens_per_s" not in row and e["seconds"] > 0:  # update: trained tokens
            row["tokens_per_s"] = round(row["tokens"] / e["seconds"], 1)
        stages[e["stage"]] = row

    start = time.perf_counter()
    loop.run(run, 1, session, on_event=on_event)
    total = time.perf_counter() - start
    return {"stages": stages, "iteration_seconds": round(total, 2)}, session


def generation_side_by_side(policy: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Eager vs static-cache generation at one batch, every row forced to ``bench_new`` tokens."""
    import copy

    import torch

    from stages.model.engines import hf as model_mod

    vocab = len(policy.tokenizer)
    g = random.Random(1)
    prompts = [[g.randrange(10, vocab) for _ in range(args.bench_prompt)] for _ in range(args.bench_batch)]
    config = copy.copy(policy.generation_config(args.bench_new, 1.0, 1.0))
    config.min_new_tokens = args.bench_new  # no early EOS: every row generates the same count
    eos = model_mod.as_list(config.eos_token_id)
    compiled = policy.device.type == "cuda" and model_mod.static_generation_supported(policy.model)
    out: dict[str, Any] = {"batch": args.bench_batch, "prompt_tokens": args.bench_prompt,
                           "new_tokens": args.bench_new, "static_compiled": compiled}
    was_training = policy.model.training
    policy.model.eval()
    try:
        for name, static in (("eager", False), ("static", True)):
            calls = []
            for i in range(2):  # the first call warms up (static: compiles), the second is measured
                cuda = _cuda()
                if cuda:
                    cuda.synchronize()
                t = time.perf_counter()
                with torch.no_grad():
                    rows = model_mod.generate_batch(
                        policy.model, prompts, config=config, pad_id=config.pad_token_id, eos_ids=eos,
                        stop_criteria=None, seeds=[i] * len(prompts), device=policy.device, static_cache=static,
                    )
                if cuda:
                    cuda.synchronize()
                calls.append((time.perf_counter() - t, sum(len(r[0]) for r in rows)))
            (first_s, _), (s, tokens) = calls
            out[name] = {"tokens_per_s": round(tokens / s, 1), "seconds": round(s, 3),
                         "first_call_seconds": round(first_s, 2), "tokens": tokens}
        if model_mod._static_failed:
            out["static_fell_back"] = model_mod._static_failed[0][:300]
    finally:
        policy.model.train(was_training)
    out["static_over_eager"] = round(out["static"]["tokens_per_s"] / max(out["eager"]["tokens_per_s"], 1e-9), 2)
    return out


def update_peak(session: Any, args: argparse.Namespace) -> dict[str, Any]:
    """One update step on ``update_rows`` x ``update_len`` random tokens (1/4 prompt, 3/4 response)."""
    from stages.training.batch import TokenSample
    from stages.training.step import update_step

    policy, optimizer, algorithm = session.trainer_for(2)  # iteration 1 is done: the policy of 2
    vocab = len(policy.tokenizer)
    g = random.Random(2)
    p_len = args.update_len // 4
    batch = [TokenSample(prompt_ids=[g.randrange(10, vocab) for _ in range(p_len)],
                    response_ids=[g.randrange(10, vocab) for _ in range(args.update_len - p_len)],
                    advantage=1.0 if i % 2 else -1.0) for i in range(args.update_rows)]
    cfg = session.run.config.update
    pad = policy.tokenizer.pad_token_id or 0
    _reset_peak()
    stats = update_step(policy.model, batch, cfg, optimizer, algorithm, pad_id=pad)
    return {"rows": args.update_rows, "tokens_per_row": args.update_len, "logprob_chunk": cfg.logprob_chunk,
            "micro_batch_size": cfg.micro_batch_size, "seconds": round(stats.seconds, 2),
            "peak_gpu_mib": _peak_mib(),
            "peak_mib": round(stats.peak_memory / 2**20, 1)}


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="3b")
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--variants", default="qlora,lora", help="comma-separated adapters: qlora, lora")
    ap.add_argument("--batch", type=int, help="B of the iteration (proposals per task type)")
    ap.add_argument("--max-new", type=int, help="new tokens per proposal/rollout in the iteration")
    ap.add_argument("--gen-batch", type=int, help="generation_batch_size in the iteration")
    ap.add_argument("--bench-batch", type=int, help="batch of the eager vs static comparison (64)")
    ap.add_argument("--bench-prompt", type=int, help="prompt tokens in that comparison")
    ap.add_argument("--bench-new", type=int, help="new tokens per row in that comparison")
    ap.add_argument("--update-rows", type=int)
    ap.add_argument("--update-len", type=int)
    ap.add_argument("--skip-generation", action="store_true", help="no eager vs static comparison")
    ap.add_argument("--workdir", type=Path, help="keep the model folder and runs here (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    for key, value in DEFAULTS[args.shape].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    from stages.model.names import pick_device

    device = pick_device(args.device)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="azr-gpu-bench-")
        workdir = Path(tmp.name)
    result: dict[str, Any] = {
        "shape": args.shape, "device": device,
        "card": torch.cuda.get_device_name() if device == "cuda" else None,
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "variants": {},
    }
    try:
        t = time.perf_counter()
        folder = workdir / f"model-{args.shape}"
        if not (folder / "config.json").exists():
            build_model_folder(args.shape, folder)
        result["build_model_seconds"] = round(time.perf_counter() - t, 1)
        for adapter in variants:
            cfg = run_config(folder, adapter, device, args)
            figures, session = one_iteration(workdir, cfg)
            try:
                if adapter == "lora" and not args.skip_generation:
                    figures["generation"] = generation_side_by_side(session.policy_for(2), args)
                if adapter == "qlora":
                    figures["update_8x1024" if args.shape == "3b" else "update"] = update_peak(session, args)
            finally:
                session.close()
                del session
                _release()
            result["variants"][adapter] = figures
    finally:
        if tmp is not None:
            tmp.cleanup()
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        _print_table(result)
    return result


def _print_table(r: dict[str, Any]) -> None:
    print(f"shape {r['shape']} on {r['device']} ({r['card'] or 'no GPU'}), torch {r['torch']}, {r['date']}")
    for adapter, v in r["variants"].items():
        print(f"\n{adapter}: one iteration {v['iteration_seconds']} s")
        print(f"  {'stage':<9} {'seconds':>8} {'tokens':>8} {'tok/s':>9} {'peak GPU MiB':>13}")
        for stage, s in v["stages"].items():
            print(f"  {stage:<9} {s['seconds']:>8} {s.get('tokens', ''):>8} {s.get('tokens_per_s', ''):>9} "
                  f"{s['peak_gpu_mib'] if s['peak_gpu_mib'] is not None else '-':>13}")
        if "generation" in v:
            g = v["generation"]
            print(f"  generation at batch {g['batch']} ({g['prompt_tokens']} prompt + {g['new_tokens']} new tokens):"
                  f" eager {g['eager']['tokens_per_s']} tok/s, static {g['static']['tokens_per_s']} tok/s"
                  f" ({'compiled' if g['static_compiled'] else 'not compiled'}; first call"
                  f" {g['static']['first_call_seconds']} s) -> {g['static_over_eager']}x")
        for key in ("update_8x1024", "update"):
            if key in v:
                u = v[key]
                print(f"  update {u['rows']}x{u['tokens_per_row']} tokens: {u['seconds']} s, peak "
                      f"{u['peak_gpu_mib'] if u['peak_gpu_mib'] is not None else u['peak_mib']} MiB")


if __name__ == "__main__":
    main()
