"""Where a run trains like the paper's, one defect a test, on the tiny model: full fine-tuning in
bf16 that moves, log-probs at the sampling temperature, responses cut at max_new_tokens counted,
prompts over max_prompt_tokens shortened or left out, the R1 template for base models and their
real end tokens, PPO's defaults (λ = 1, whitening within each (type, role) group)."""

import json

import pytest
from conftest import TINY

from stages.config.layers import load_config
from stages.config.schema import ModelSection
from stages.model.policy import load_policy


def test_full_fine_tuning_in_bf16_at_the_papers_lr_moves_almost_every_weight(tmp_path, azr, tiny_model):
    """With bf16 weights updated in place, 0.4% of the weights changed in one update at lr 1e-6;
    fp32 master weights (bf16 compute) move them."""
    from safetensors.torch import load_file

    run = tmp_path / "r"
    sets = ["--set", "model.adapter=full", "--set", "model.dtype=bfloat16", "--set", "update.lr=1.0e-6"]
    assert azr("loop", "--run", run, "--config", TINY, *sets, "--iters", "2").code == 0
    weights = []
    for n in (1, 2):
        assert azr("export", "--run", run, "--iter", n, "--out", tmp_path / f"e{n}").code == 0
        weights.append(load_file(tmp_path / f"e{n}" / "model.safetensors"))
    total = sum(w.numel() for w in weights[0].values())
    changed = sum(int((weights[0][k] != weights[1][k]).sum()) for k in weights[0])
    assert changed / total >= 0.95, changed / total


def test_old_logprobs_are_the_samplers_at_its_temperature(tiny_model):
    """The update scores a response under logits / T, the distribution it was sampled from."""
    import torch

    from stages.training.batch import TokenSample, micro_batches
    from stages.training.logprobs import forward

    policy = load_policy(ModelSection(name="builtin:tiny"), trainable=False)
    T = 0.7
    config = policy.generation_config(12, T, 1.0)
    prompt = policy.encode(policy.wrap("def add(a, b):"))
    torch.manual_seed(5)
    with torch.no_grad():
        out = policy.model.generate(input_ids=torch.tensor([prompt]), generation_config=config,
                                    output_scores=True, return_dict_in_generate=True)
    chosen = out.sequences[0, len(prompt):]
    sampler = torch.stack([torch.log_softmax(s[0].float(), -1)[t] for s, t in zip(out.scores, chosen, strict=True)])
    sample = TokenSample(prompt_ids=prompt, response_ids=chosen.tolist(), temperature=T)
    [mb] = micro_batches([sample], 1, policy.tokenizer.pad_token_id, policy.device)
    with torch.no_grad():
        logp, _, _ = forward(policy.model, mb.input_ids, mb.attention_mask, mb.response_mask, 4, False,
                             mb.temperature)
        plain, _, _ = forward(policy.model, mb.input_ids, mb.attention_mask, mb.response_mask, 4, False)
    scored = logp[0][mb.response_mask[0]]
    torch.testing.assert_close(scored, sampler, rtol=1e-4, atol=1e-4)
    assert (plain[0][mb.response_mask[0]] - sampler).abs().max() > 1e-2  # the plain softmax is another law


def test_training_samples_carry_their_roles_temperature_and_group(tmp_path, tiny_model):
    from stages import loop
    from stages.seed import run as seed_run
    from stages.session import Session
    from stages.update import training_samples

    cfg = load_config(TINY, ["propose.temperature=0.6", "solve.temperature=0.9"])
    run = seed_run(tmp_path / "r", cfg)
    with Session(run) as s:
        loop.run(run, 1, s)
    samples = training_samples(run, 1)
    groups = {x.group: x.temperature for x in samples}
    assert groups["deduction/proposer"] == 0.6 and groups["induction/solver"] == 0.9


def test_truncated_responses_are_counted(tmp_path, azr, tiny_model):
    """A response cut at max_new_tokens loses its closing tags: every generating stage counts them."""
    from stages.rundir.manifest import open_run
    from stages.rundir.records import Proposal

    assert azr("loop", "--run", tmp_path / "r", "--config", TINY, "--set", "propose.max_new_tokens=3",
               "--iters", "1").code == 0
    run = open_run(tmp_path / "r")[0]
    proposals = run.read(1, "propose", "proposals.jsonl", Proposal)
    assert {p.finish for p in proposals} <= {"stop", "eos", "length"} and any(p.finish == "length" for p in proposals)
    share = sum(p.finish == "length" for p in proposals) / len(proposals)
    assert run.summary(1, "propose").metrics["truncated"] == pytest.approx(share)
    assert "truncated" in run.summary(1, "solve").metrics
    assert azr("report", "--run", run.path).code == 0
    assert (run.path / "report" / "truncation.png").is_file()


def test_prompts_over_the_limit_are_shortened_or_left_out(tmp_path, tiny_model):
    import random

    from stages.propose import build_queries, fit_prompts, proposer_query
    from stages.rundir.records import Task
    from stages.solve import fit_prompts as fit_solver

    cfg = load_config(TINY, ["propose.references=3"])
    prog = "def f(a):\n    return a"
    big = [Task(task_id=f"t{i}", type=t, program=prog + "  # " + "x" * 200 * i, inputs=["1"] * (4 if t == "induction" else 1),
                outputs=["1"] * (4 if t == "induction" else 1), message="m")
           for i in range(4) for t in ("deduction", "abduction", "induction")]
    buffers = {t: [x for x in big if x.type == t] for t in ("deduction", "abduction", "induction")}
    queries = build_queries(buffers, cfg, random.Random(0), 1)
    length = lambda q: len(q.prompt) // 4  # noqa: E731 (a stand-in tokenizer: 4 characters a token)
    # a limit that some three-reference prompts exceed but that some fit with one reference
    one_ref = sorted(length(proposer_query(cfg, q.id, q.type, q.references[:1])) for q in queries if q.type != "induction")
    limit = one_ref[len(one_ref) // 2]
    cfg.propose.max_prompt_tokens = limit
    kept, counts = fit_prompts(queries, cfg, length)
    assert all(length(q) <= limit for q in kept)
    assert counts["prompts_shortened"] > 0 and counts["prompts_dropped"] > 0
    assert len(kept) + counts["prompts_dropped"] == len(queries)
    assert {q.id for q in kept} <= {q.id for q in queries}  # same ids: records still join
    kept, counts = fit_solver(queries, limit, length)
    assert counts["prompts_dropped"] == len(queries) - len(kept) > 0


def test_base_models_get_the_r1_template_with_think_prefilled(tiny_model):
    from stages.method.kinds import parse_solver
    from stages.model.templates import resolve_format, wrap

    class Tok:
        chat_template = "{{ x }}"

    assert resolve_format("auto", "Qwen/Qwen2.5-Coder-3B", Tok()) == "r1"
    assert resolve_format("auto", "Qwen/Qwen2.5-Coder-3B-Instruct", Tok()) == "chat"
    assert resolve_format("auto", "builtin:smollm2-135m", Tok()) == "chat"
    text = wrap("r1", Tok(), [("user", "What does f return?")])
    assert text.startswith("A conversation between User and Assistant.")
    assert text.endswith("User: What does f return?\nAssistant: <think>")
    policy = load_policy(ModelSection(name="builtin:tiny", prompt_format="r1"), trainable=False)
    assert policy.answer_prefix == "<think>" and policy.wrap("hi").endswith("Assistant: <think>")
    completion = " trace it </think>\n<answer>\n```output\n3\n```\n</answer>"
    assert parse_solver(policy.answer_prefix + completion, "deduction").format_ok
    assert not parse_solver(completion, "deduction").format_ok


def test_the_chosen_template_is_in_the_summaries(tmp_path, azr, tiny_model):
    r = azr("loop", "--run", tmp_path / "r", "--config", TINY, "--set", "model.prompt_format=r1", "--iters", "1")
    assert r.code == 0, r.err
    for stage in ("propose", "solve"):
        summary = json.loads((tmp_path / "r" / "iters" / "000001" / stage / "summary.json").read_text())
        assert summary["metrics"]["prompt_format"] == "r1"


def test_generation_stops_at_the_models_real_end_tokens(tiny_model):
    policy = load_policy(ModelSection(name="builtin:tiny"), trainable=False)
    vocab = policy.tokenizer.get_vocab()
    eos = policy.generation_config(8, 1.0, 1.0).eos_token_id
    assert vocab["<|im_end|>"] in eos and vocab["<|endoftext|>"] in eos


def test_ppo_defaults_leave_early_tokens_their_advantage():
    """λ = 1 (veRL's default): with a critic at zero, the first of 200 tokens gets the same
    advantage as the last (with λ = 0.95 it got 0.95^199 of it)."""
    import torch

    from stages.training.losses import gae, last_token_rewards

    lam = load_config(sets=["update.algorithm=ppo"]).update.algorithm.lam
    assert lam == 1.0
    mask = torch.ones(1, 200, dtype=torch.bool)
    adv, _ = gae(last_token_rewards(mask, [1.0]), torch.zeros(1, 200), mask, 1.0, lam)
    assert adv[0, 0] == adv[0, -1] == 1.0


def test_ppo_whitens_within_each_task_type_and_role():
    import torch

    from stages.training.losses import whiten

    adv = [torch.tensor([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])]
    mask = [torch.ones(2, 3, dtype=torch.bool)]
    whiten(adv, mask, [["deduction/solver", "deduction/proposer"]])
    for row in adv[0]:
        assert abs(float(row.mean())) < 1e-6 and abs(float(row.std(unbiased=False)) - 1) < 1e-5


def test_the_proposer_is_told_what_is_not_allowed():
    """Banned modules stay banned at any depth, banned names only where they are the builtin, and
    the proposer's prompt lists the rules (no hidden rule costs it reward)."""
    import random

    from sandbox import SandboxConfig, check_program
    from stages.propose import build_queries
    from stages.rundir.records import Task

    cfg = load_config(TINY)
    seed = Task(task_id="s", type="deduction", program="def f(a):\n    return a", inputs=["1"], outputs=["1"])
    buffers = {"deduction": [seed], "abduction": [seed.model_copy(update={"type": "abduction"})],
               "induction": [seed.model_copy(update={"type": "induction", "inputs": ["1"] * 4, "outputs": ["1"] * 4})]}
    for demos in (False, True):
        cfg.propose.demonstrations = demos
        ded = next(q for q in build_queries(buffers, cfg, random.Random(0), 1) if q.type == "deduction")
        assert "Not allowed: importing os, sys" in ded.prompt and "getattr" in ded.prompt
    sb = SandboxConfig()
    assert check_program("def f(input):\n    vars = [input]\n    return vars", sb).ok
    assert not check_program("import contextlib\ndef f(x):\n    return contextlib.os.getcwd()", sb).ok
    assert not check_program("def f(x):\n    return eval(x)", sb).ok
