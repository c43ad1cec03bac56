"""The update's training maths on a tiny random Qwen2 with LoRA: no tokenizer, no download."""

import itertools
import math
import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from stages.config.schema import UpdateSection  # noqa: E402
from stages.training.algorithms import make_algorithm  # noqa: E402
from stages.training.batch import TokenSample as Sample  # noqa: E402
from stages.training.batch import pad_batch  # noqa: E402
from stages.training.logprobs import body_checkpointed, token_logprobs  # noqa: E402
from stages.training.losses import clipped_surrogate, gae, kl_k3, last_token_rewards  # noqa: E402
from stages.training.state import build_optimizer, load_training_state, save_training_state  # noqa: E402
from stages.training.step import update_step  # noqa: E402

VOCAB = 300
PAD = 0


def tiny_model(seed: int = 0, identity_lora: bool = False, dtype=None):
    """Qwen2 (hidden 64, 2 layers) + LoRA r4 on all linear layers.

    peft's default init sets B = 0, so lora_A gets no gradient in the first step; tests that need
    every LoRA parameter to move use a random B (``init_lora_weights=False``).

    Tests that compare two ways of computing the same numbers use ``dtype=torch.float64``: fp32
    sums come out in a different order on AVX2 and AVX-512 CPUs (differences of ~1e-6 that an
    Adam step can amplify), while in fp64 both ways agree to ~1e-12, far below what a chunking,
    masking or alignment bug would change (O(1))."""
    torch.manual_seed(seed)
    cfg = transformers.Qwen2Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
    )
    base = transformers.Qwen2ForCausalLM(cfg)
    lora = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                           init_lora_weights=identity_lora, task_type="CAUSAL_LM")
    model = peft.get_peft_model(base, lora)
    return model.to(dtype) if dtype is not None else model


F64 = {"rtol": 1e-9, "atol": 1e-12}
"""Tolerances of an fp64 comparison between two orders of the same sums."""


def make_batch(n: int = 6, seed: int = 1, advantage: float | None = None) -> list[Sample]:
    g = random.Random(seed)
    out = []
    for i in range(n):
        p = [g.randrange(1, VOCAB) for _ in range(g.randint(3, 9))]
        r = [g.randrange(1, VOCAB) for _ in range(g.randint(2, 11))]
        a = advantage if advantage is not None else g.uniform(-1, 1)
        out.append(Sample(prompt_ids=p, response_ids=r, advantage=a, reward=float(i % 2)))
    return out


def ucfg(**kw) -> UpdateSection:
    base = {"lr": 1e-2, "micro_batch_size": 2, "logprob_chunk": 5, "entropy_coef": 0.0}
    base.update(kw)
    return UpdateSection(**base)


def lora_params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


# ----------------------------------------------------------------------------- pure helpers


def test_pad_batch_masks():
    ids, attn, resp = pad_batch([Sample([5, 6], [7, 8, 9]), Sample([1], [2])], pad_id=PAD)
    assert ids.tolist() == [[5, 6, 7, 8, 9], [1, 2, 0, 0, 0]]
    assert attn.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert resp.tolist() == [[False, False, True, True, True], [False, True, False, False, False]]
    with pytest.raises(ValueError, match="prompt token"):
        pad_batch([Sample([], [1])], PAD)


def test_gae_matches_hand_computation():
    # one prompt position (masked out), three response tokens, one padding position
    mask = torch.tensor([[0, 1, 1, 1, 0]], dtype=torch.bool)
    values = torch.tensor([[9.0, 0.5, 0.6, 0.7, 9.0]])
    rewards = last_token_rewards(mask, [1.0])
    assert rewards.tolist() == [[0.0, 0.0, 0.0, 1.0, 0.0]]
    gamma, lam = 0.9, 0.8
    d3 = 1.0 + gamma * 0.0 - 0.7  # last token: no next value
    d2 = 0.0 + gamma * 0.7 - 0.6
    d1 = 0.0 + gamma * 0.6 - 0.5
    a3 = d3
    a2 = d2 + gamma * lam * a3
    a1 = d1 + gamma * lam * a2
    adv, ret = gae(rewards, values, mask, gamma, lam)
    assert adv[0].tolist() == pytest.approx([0.0, a1, a2, a3, 0.0])
    assert ret[0].tolist() == pytest.approx([0.0, a1 + 0.5, a2 + 0.6, a3 + 0.7, 0.0])
    # gamma = lam = 1: every return is the final reward
    _, ret1 = gae(rewards, values, mask, 1.0, 1.0)
    assert ret1[0, 1:4].tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_clipped_surrogate_and_k3():
    old = torch.zeros(4)
    logp = torch.log(torch.tensor([1.0, 1.5, 0.5, 1.5]))
    adv = torch.tensor([1.0, 1.0, 1.0, -1.0])
    loss, clipped = clipped_surrogate(logp, old, adv, 0.2)
    # ratio 1 -> -A; ratio 1.5 with A>0 -> capped at 1.2; ratio 0.5 with A>0 -> 0.5 (pessimistic);
    # ratio 1.5 with A<0 -> 1.5 (the unclipped term is the smaller objective)
    assert loss.tolist() == pytest.approx([-1.0, -1.2, -0.5, 1.5])
    assert clipped.tolist() == [False, True, False, False]
    assert kl_k3(logp, logp).abs().max() == 0
    d = math.log(0.5)
    assert float(kl_k3(torch.tensor([0.0]), torch.tensor([d]))) == pytest.approx(0.5 - d - 1)


# ----------------------------------------------------------------------------- log-probs


def test_chunked_logprobs_equal_plain_values_and_gradients():
    model = tiny_model(dtype=torch.float64)
    ids, attn, resp = pad_batch(make_batch(5), PAD)
    grads, outs = {}, {}
    for chunk in (0, 1, 7, 10_000):
        model.zero_grad(set_to_none=True)
        logp, ent = token_logprobs(model, ids, attn, resp, chunk=chunk, with_entropy=True)
        (logp.sum() + 0.3 * ent.sum()).backward()
        outs[chunk] = (logp.detach(), ent.detach())
        grads[chunk] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert outs[0][0][~resp].abs().max() == 0  # nothing outside the response
    for chunk in (1, 7, 10_000):
        torch.testing.assert_close(outs[chunk][0], outs[0][0], **F64)
        torch.testing.assert_close(outs[chunk][1], outs[0][1], **F64)
        assert grads[chunk].keys() == grads[0].keys()
        for name, g in grads[0].items():
            torch.testing.assert_close(grads[chunk][name], g, **F64)

    # and both equal the model's own forward pass
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn).logits
    ref = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(outs[7][0][:, 1:][resp[:, 1:]], ref[resp[:, 1:]], **F64)


# ----------------------------------------------------------------------------- updates


def test_one_update_moves_every_lora_parameter_and_no_base_parameter():
    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model.parameters(), ucfg())
    stats = update_step(model, make_batch(), ucfg(), opt, pad_id=PAD)
    assert stats.optimizer_steps == 1 and stats.tokens > 0 and stats.samples == 6
    assert stats.kl is None and stats.value_loss is None
    assert stats.clip_frac == 0.0  # one epoch: the ratio is exactly 1
    assert math.isfinite(stats.loss) and stats.grad_norm > 0 and stats.peak_memory >= 0
    lora = [n for n in before if "lora_" in n]
    assert lora
    for name, p in model.named_parameters():
        if "lora_" in name:
            assert not torch.equal(p, before[name]), f"{name} did not change"
        else:
            assert torch.equal(p, before[name]), f"base parameter {name} changed"


def test_positive_advantages_raise_the_response_log_prob():
    model = tiny_model()
    batch = make_batch(advantage=1.0)
    cfg = ucfg(lr=5e-3)
    opt = build_optimizer(model.parameters(), cfg)
    ids, attn, resp = pad_batch(batch, PAD)

    def mean_logp() -> float:
        with torch.no_grad():
            logp, _ = token_logprobs(model, ids, attn, resp, chunk=0)
        return float(logp[resp].mean())

    seen = [mean_logp()]
    for _ in range(4):
        update_step(model, batch, cfg, opt, pad_id=PAD)
        seen.append(mean_logp())
    # with A = +1 the loss −A·mean log p (the surrogate's value up to the constant old log-probs)
    # falls exactly when the log-prob rises
    assert all(b > a for a, b in itertools.pairwise(seen)), seen


def test_gradient_accumulation_equals_the_full_batch():
    batch = make_batch(6)
    results = []
    for micro in (1, 4, 6):
        model = tiny_model(dtype=torch.float64)
        cfg = ucfg(micro_batch_size=micro, entropy_coef=0.01)
        opt = build_optimizer(model.parameters(), cfg)
        stats = update_step(model, batch, cfg, opt, pad_id=PAD)
        results.append((stats, lora_params(model)))
    for stats, params in results[1:]:
        assert stats.loss == pytest.approx(results[0][0].loss, rel=1e-9)
        assert stats.grad_norm == pytest.approx(results[0][0].grad_norm, rel=1e-9)
        for name, p in params.items():
            torch.testing.assert_close(p, results[0][1][name], **F64)


def test_kl_is_zero_at_init_and_positive_after_an_update():
    model = tiny_model(identity_lora=True)  # B = 0: the adapted model is the base model
    cfg = ucfg(kl_coef=0.1)
    opt = build_optimizer(model.parameters(), cfg)
    first = update_step(model, make_batch(), cfg, opt, pad_id=PAD)
    assert first.kl == 0.0
    second = update_step(model, make_batch(), cfg, opt, pad_id=PAD)
    assert second.kl > 0.0


def test_kl_needs_a_reference_for_a_plain_model():
    model = tiny_model().get_base_model()
    cfg = ucfg(kl_coef=0.1)
    with pytest.raises(ValueError, match="reference model"):
        update_step(model, make_batch(), cfg, build_optimizer(model.parameters(), cfg), pad_id=PAD)


def test_ppo_epochs_take_several_steps_and_clip():
    model = tiny_model()
    cfg = ucfg(ppo_epochs=3, lr=5e-2, clip_ratio=0.05)
    stats = update_step(model, make_batch(), cfg, build_optimizer(model.parameters(), cfg), pad_id=PAD)
    assert stats.optimizer_steps == 3
    assert stats.clip_frac > 0  # later epochs moved the ratio out of the clip range


def test_ppo_value_head_trains():
    model = tiny_model()
    cfg = ucfg(algorithm={"name": "ppo", "value_lr": 5e-2}, lr=1e-3)
    ppo = make_algorithm(cfg, model)
    opt = build_optimizer(model.parameters(), cfg, ppo)
    batch = make_batch()
    losses = [update_step(model, batch, cfg, opt, ppo, pad_id=PAD).value_loss for _ in range(6)]
    assert losses[-1] < losses[0] * 0.7, losses
    with pytest.raises(ValueError, match="value head"):
        update_step(model, batch, cfg, opt, pad_id=PAD)
    with pytest.raises(ValueError, match="not in the optimizer"):
        update_step(model, batch, cfg, build_optimizer(model.parameters(), cfg), ppo, pad_id=PAD)


def test_adamw8bit_steps_on_cpu():
    pytest.importorskip("bitsandbytes")
    model = tiny_model()
    cfg = ucfg(optimizer="adamw8bit")
    opt = build_optimizer(model.parameters(), cfg)
    assert type(opt).__name__ == "AdamW8bit"
    before = lora_params(model)
    update_step(model, make_batch(), cfg, opt, pad_id=PAD)
    assert any(not torch.equal(p, before[n]) for n, p in lora_params(model).items())


@pytest.mark.parametrize("algorithm", ["trr++", "ppo"])
def test_resume_from_saved_state_is_exact(tmp_path, algorithm):
    cfg = ucfg(algorithm=algorithm)
    batches = [make_batch(seed=s) for s in (1, 2)]

    def fresh():
        model = tiny_model()
        algo = make_algorithm(cfg, model)
        return model, algo, build_optimizer(model.parameters(), cfg, algo)

    # uninterrupted: two iterations, then the next random draws
    model, head, opt = fresh()
    rng = random.Random(7)
    update_step(model, batches[0], cfg, opt, head, pad_id=PAD)
    adapter = lora_params(model)
    save_training_state(tmp_path, opt, head, rng)
    rng.random()
    update_step(model, batches[1], cfg, opt, head, pad_id=PAD)
    expected = (lora_params(model), torch.rand(3), random.random(), rng.random())

    # resumed: a fresh process state, the adapter and the training state loaded
    model, head, opt = fresh()
    torch.manual_seed(123)
    random.seed(123)
    rng = random.Random(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in adapter:
                p.copy_(adapter[name])
    load_training_state(tmp_path, opt, head, rng)
    rng.random()
    update_step(model, batches[1], cfg, opt, head, pad_id=PAD)
    got = (lora_params(model), torch.rand(3), random.random(), rng.random())

    for name, p in expected[0].items():
        assert torch.equal(got[0][name], p), name
    assert torch.equal(got[1], expected[1])
    assert got[2:] == expected[2:]


def test_body_gradient_checkpointing_gives_the_same_update():
    batch = make_batch()
    params = []
    for gc in (False, True):
        model = tiny_model(dtype=torch.float64)
        cfg = ucfg(gradient_checkpointing=gc)
        update_step(model, batch, cfg, build_optimizer(model.parameters(), cfg), pad_id=PAD)
        assert body_checkpointed(model) == gc
        params.append(lora_params(model))
    for name, p in params[0].items():
        torch.testing.assert_close(params[1][name], p, **F64)


def test_a_micro_batch_without_response_tokens_is_skipped():
    model = tiny_model()
    batch = [Sample([1, 2], []), Sample([3], []), *make_batch(2)]
    cfg = ucfg(micro_batch_size=2)
    stats = update_step(model, batch, cfg, build_optimizer(model.parameters(), cfg), pad_id=PAD)
    assert stats.tokens == sum(len(s.response_ids) for s in batch)
    assert math.isfinite(stats.loss)


def test_one_on_policy_epoch_needs_no_separate_old_pass():
    """TRR++ with one epoch takes the old log-probs from its first forward pass (detached): the
    same update as with the separate no-grad pass, and a third less forward work."""
    batch = make_batch(6)
    params = []
    for old_pass in (True, None):
        model = tiny_model(dtype=torch.float64)
        cfg = ucfg(entropy_coef=0.01)
        stats = update_step(model, batch, cfg, build_optimizer(model.parameters(), cfg), pad_id=PAD, old_pass=old_pass)
        params.append((stats, lora_params(model)))
    (a, pa), (b, pb) = params
    assert a.loss == pytest.approx(b.loss, rel=1e-12) and a.clip_frac == b.clip_frac == 0.0
    for name, p in pa.items():
        torch.testing.assert_close(pb[name], p, **F64)


def test_zero_advantage_samples_can_be_left_out_with_the_same_update():
    """skip_zero_advantage: samples with A = 0 skip the model; with no entropy bonus the update is
    the same (the token mean still counts the whole batch)."""
    batch = make_batch(6)
    for s in batch[::2]:
        s.advantage = 0.0
    params = []
    for skip in (False, True):
        model = tiny_model(dtype=torch.float64)
        cfg = ucfg(skip_zero_advantage=skip)
        stats = update_step(model, batch, cfg, build_optimizer(model.parameters(), cfg), pad_id=PAD)
        params.append((stats, lora_params(model)))
    (a, pa), (b, pb) = params
    assert (a.trained_samples, b.trained_samples) == (6, 3) and a.tokens == b.tokens
    for name, p in pa.items():
        torch.testing.assert_close(pb[name], p, **F64)
    model = tiny_model()
    cfg = ucfg(skip_zero_advantage=True)
    for s in batch:
        s.advantage = 0.0
    before = lora_params(model)
    stats = update_step(model, batch, cfg, build_optimizer(model.parameters(), cfg), pad_id=PAD)
    assert stats.trained_samples == 0 and stats.optimizer_steps == 0
    assert all(torch.equal(p, before[n]) for n, p in lora_params(model).items())
