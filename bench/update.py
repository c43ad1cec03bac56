"""Peak memory and time of one update step, with and without chunked log-probs, on the same batch.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/update.py [--json] [--model smollm2|tiny]

Default: the real SmolLM2-135M (``builtin:smollm2-135m`` through ``stages.model.policy.load_policy``,
LoRA r16 on all linear layers, fp32 on CPU), a batch of 4 × 256 tokens (64 prompt + 192 response
tokens of random ids), one micro-batch, TRR++ with entropy bonus. If the built-in cannot be
loaded, a Llama of SmolLM2's shape with random weights stands in (the output says which).

Each variant (``--chunks``, default ``0,128``; 0 = plain full-vocabulary log-softmax) runs in a
fresh subprocess so the peak RSS is that variant's alone, with glibc told to mmap every
allocation of 128 KiB or more (``MALLOC_ENV``) so the resident size follows the live tensors.
Each runs ``--steps`` update steps (default 2). ``update_peak_mb``: on CPU the highest RSS during
the steps minus the RSS once the model is built and its memory-mapped weights paged in by a
3-token forward (so the weights are excluded); on CUDA
``max_memory_allocated`` (weights included). Times are those of the last step; on a shared host
they vary several-fold between identical runs, so only memory is a firm result there.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH, PROMPT, RESPONSE = 4, 64, 192
# glibc keeps freed memory in its arenas (one per thread) and hands it out again: measured this
# way, a second step's peak looks small because the first step's memory is already resident, and
# the resident size after a step depends on fragmentation. Serving every allocation of 128 KiB or
# more with its own mmap (unmapped on free) makes the resident size follow the live tensors.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def _load(model: str, device: str):
    """(peft model, pad id, vocab size, description)."""
    from stages.config.schema import ModelSection
    from stages.model.policy import load_policy

    name = {"smollm2": "builtin:smollm2-135m", "tiny": "builtin:tiny"}[model]
    try:
        policy = load_policy(ModelSection(name=name, device=device, dtype="float32"))
        pad = policy.tokenizer.pad_token_id or 0
        weights = "real weights" if model == "smollm2" else "random weights"
        return policy.model, pad, policy.model.config.vocab_size, f"{name} ({weights}, LoRA r16, fp32)"
    except Exception as e:  # the benchmark still measures the shape when the built-in is missing
        if model != "smollm2":
            raise
        import peft
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                          num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
                          max_position_embeddings=2048)
        base = LlamaForCausalLM(cfg).to(device)
        lora = peft.LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
        why = f"{type(e).__name__}: {str(e)[:80]}"
        return peft.get_peft_model(base, lora), 0, 49152, f"random Llama of SmolLM2's shape ({why})"


def worker(args: argparse.Namespace) -> dict:
    import torch

    from stages.config.schema import UpdateSection
    from stages.training.batch import TokenSample
    from stages.training.state import build_optimizer
    from stages.training.step import update_step

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    model, pad, vocab, described = _load(args.model, device)
    g = random.Random(0)
    batch = [
        TokenSample(prompt_ids=[g.randrange(1, vocab) for _ in range(PROMPT)],
               response_ids=[g.randrange(1, vocab) for _ in range(RESPONSE)],
               advantage=1.0 if i % 2 else -1.0)
        for i in range(BATCH)
    ]
    cfg = UpdateSection(micro_batch_size=BATCH, logprob_chunk=args.chunk,
                        gradient_checkpointing=args.gradient_checkpointing)
    opt = build_optimizer(model.parameters(), cfg)
    # the weights are memory-mapped from safetensors: a first forward pages them in (~0.5 GB for
    # SmolLM2 in fp32), which is the model's memory, not the update's
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 2, 3]], device=device))
    rss_loaded = _rss_mb()
    runs, peaks = [], []
    for _ in range(args.steps):
        start = _rss_mb()
        runs.append(update_step(model, batch, cfg, opt, pad_id=pad))
        peaks.append(start + runs[-1].peak_memory / 2**20)  # this step's peak RSS, absolute
    last = runs[-1]
    return {
        "chunk": args.chunk,
        "gradient_checkpointing": args.gradient_checkpointing,
        "model": described,
        "device": device,
        # CPU: peak RSS of the steps above the RSS with the model loaded; CUDA: max allocated
        "update_peak_mb": round(max(peaks) - rss_loaded if device == "cpu" else max(peaks) - start, 1),
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_loaded_mb": round(rss_loaded, 1),
        "step_peaks_above_step_start_mb": [round(r.peak_memory / 2**20, 1) for r in runs],
        "seconds": round(last.seconds, 2),
        "step_seconds": [round(r.seconds, 2) for r in runs],
        "loss": round(last.loss, 5),
        "tokens": last.tokens,
    }


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    ap.add_argument("--chunks", default="0,128", help="comma-separated logprob_chunk values (0 = plain)")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--threads", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    ap.add_argument("--gradient-checkpointing", action="store_true",
                    help="also checkpoint the transformer body (update.gradient_checkpointing)")
    ap.add_argument("--keep-malloc", action="store_true",
                    help="leave glibc's allocator settings alone (see MALLOC_ENV)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--chunk", type=int, help=argparse.SUPPRESS)  # worker mode
    args = ap.parse_args()

    if args.chunk is not None:
        print(json.dumps(worker(args)))
        return

    results = []
    for chunk in (int(c) for c in args.chunks.split(",")):
        cmd = [sys.executable, __file__, "--chunk", str(chunk), "--model", args.model, "--steps",
               str(args.steps), "--device", args.device, "--threads", str(args.threads)]
        if args.gradient_checkpointing:
            cmd.append("--gradient-checkpointing")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **({} if args.keep_malloc else MALLOC_ENV)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            sys.exit(f"variant chunk={chunk} failed:\n{proc.stderr[-2000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    plain = next((r for r in results if r["chunk"] == 0), results[0])
    for r in results:
        r["peak_vs_plain"] = round(r["update_peak_mb"] / plain["update_peak_mb"], 3) if plain["update_peak_mb"] else None
        r["time_vs_plain"] = round(r["seconds"] / plain["seconds"], 3) if plain["seconds"] else None
    report = {
        "batch": f"{BATCH}x{PROMPT + RESPONSE} tokens ({PROMPT} prompt + {RESPONSE} response)",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads {args.threads}",
        "load_average": os.getloadavg(),
        "malloc_env": {} if args.keep_malloc else MALLOC_ENV,
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"model: {results[0]['model']}\nbatch: {report['batch']}\nmachine: {report['machine']}")
    print(f"gradient checkpointing of the body: {'on' if args.gradient_checkpointing else 'off'}")
    print(f"{'chunk':>6} {'update peak MB':>15} {'x plain':>8} {'process peak MB':>16} {'step s':>7} "
          f"{'x plain':>8} {'loss':>9}")
    for r in results:
        print(f"{r['chunk']:>6} {r['update_peak_mb']:>15} {r['peak_vs_plain']!s:>8} "
              f"{r['process_peak_rss_mb']:>16} {r['seconds']:>7} {r['time_vs_plain']!s:>8} {r['loss']:>9}")


if __name__ == "__main__":
    main()
