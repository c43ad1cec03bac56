"""The levers beyond the paper (issue #26): each a config field, off by default, pinned on
hand-made inputs; and a tiny loop with every lever on."""

import math
import random
from typing import ClassVar

import pytest

from stages.config.layers import load_config
from stages.config.schema import Config, RewardSection, field_docs, lever_defaults
from stages.errors import ConfigError
from stages.method.levers import (
    CONTROL_MARKER,
    band_filter,
    code_tokens,
    fingerprint,
    jaccard,
    length_penalty,
    max_similarity,
    ngrams,
    random_control,
    run_markers,
)
from stages.reward import RewardLevers, levers_for, proposal_similarities, score, summarize
from stages.rundir.records import Proposal, Rollout, Sample, Task, Validation

LEVERS = {
    "solve.difficulty_band": None,
    "solve.reuse_learnability": False,
    "reward.diversity_penalty": 0.0,
    "reward.control": "none",
    "update.clip_high": None,
    "update.loss_aggregation": "token",
    "update.overlong": "keep",
    "update.overlong_window": 64,
}
ALL_ON = ["solve.difficulty_band=[0.2, 0.8]", "solve.reuse_learnability=true", "reward.diversity_penalty=0.5",
          "reward.control=random", "update.clip_high=0.28", "update.loss_aggregation=sequence",
          "update.overlong=penalize", "update.overlong_window=16"]


# ----------------------------------------------------------------------------- config


def test_every_lever_is_a_documented_field_off_by_default():
    assert lever_defaults() == LEVERS
    docs = field_docs()
    assert all(docs[k] for k in LEVERS)
    assert "entropy/proposer" in docs["update.entropy_coef"] and Config().update.entropy_coef == 0.001


def test_levers_left_off_keep_the_digest_and_levers_on_change_it():
    base = load_config()
    assert load_config(sets=[f"{k}={'null' if v is None else v}" for k, v in LEVERS.items()]).digest() == base.digest()
    for item in ALL_ON:
        assert load_config(sets=[item]).digest() != base.digest(), item


def test_one_rollout_is_refused_with_the_reason():
    with pytest.raises(ConfigError) as e:
        load_config(sets=["solve.rollouts=1"])
    msg = str(e.value)
    assert "solve.rollouts" in msg and "at least 2" in msg and "learnability" in msg and "\n" not in msg
    assert load_config(sets=["solve.rollouts=2"]).solve.rollouts == 2


def test_difficulty_band_must_be_an_ordered_pair_of_rates():
    assert load_config(sets=["solve.difficulty_band=[0.1, 0.9]"]).solve.difficulty_band == (0.1, 0.9)
    for bad in ("[0.9, 0.1]", "[-0.1, 0.5]", "[0.5, 1.5]", "[0.5]"):
        with pytest.raises(ConfigError, match="solve.difficulty_band"):
            load_config(sets=[f"solve.difficulty_band={bad}"])


def test_every_lever_on_loads():
    cfg = load_config(sets=ALL_ON)
    assert cfg.update.clip_high == 0.28 and cfg.update.overlong == "penalize" and cfg.reward.control == "random"


# ----------------------------------------------------------------------------- difficulty band


def test_band_keeps_measured_tasks_in_band_and_unmeasured_ones():
    pool = ["a", "b", "c", "d", "e"]
    rates = {"a": 0.5, "b": 0.0, "c": 1.0, "e": 0.25}
    kept, counts = band_filter(pool, rates, (0.25, 0.75), task_id=lambda t: t)
    assert kept == ["a", "d", "e"]  # inclusive bounds; d was never measured
    assert counts == {"in": 2, "unmeasured": 1, "out": 2}
    assert band_filter(pool, rates, None, task_id=lambda t: t) == (pool, {"in": 0, "unmeasured": 0, "out": 0})


def test_band_buffers_and_measured_rates_from_the_reward_records():
    from stages.solve import band_buffers, measured_rates

    def task(i, typ="deduction"):
        return Task(task_id=f"t{i}", type=typ, program="def f(a):\n    return a", inputs=["1"], outputs=["1"])

    class FakeRun:
        samples: ClassVar = {1: [Sample(sample_id="p1", role="proposer", type="deduction", reward=0, advantage=0, solve_rate=0.5),
                       Sample(sample_id="p2", role="proposer", type="deduction", reward=-1, advantage=0),
                       Sample(sample_id="s1", role="solver", type="deduction", reward=1, advantage=0)],
                   2: [Sample(sample_id="p3", role="proposer", type="abduction", reward=0, advantage=0, solve_rate=1.0)]}

        def is_done(self, n, stage):
            return n in self.samples

        def records(self, n, file):
            return self.samples[n]

    rates = measured_rates(FakeRun(), 3)
    assert rates == {"tp1": 0.5, "tp3": 1.0}
    assert measured_rates(FakeRun(), 2) == {"tp1": 0.5}  # only iterations before n
    buffers = {"deduction": [task("p1"), task("x")], "abduction": [task("p3", "abduction")], "induction": []}
    out, counts = band_buffers(buffers, rates, (0.2, 0.8))
    assert [t.task_id for t in out["deduction"]] == ["tp1", "tx"] and out["abduction"] == []
    assert counts == {"band/in": 1, "band/unmeasured": 1, "band/out": 1}


# ----------------------------------------------------------------------------- diversity


def test_normalized_code_ignores_names_comments_and_layout():
    a = "def f(a):\n    return a + 1"
    b = "def g(x):   # a comment\n\n    return x + 1\n"
    assert code_tokens(a) == code_tokens(b)
    assert code_tokens(a) != code_tokens("def f(a):\n    return a - 1")
    assert code_tokens("def (") == ["def", "("]  # text that does not parse: its own tokens


def test_ngrams_and_jaccard_by_hand():
    assert ngrams(["a", "b", "c", "d", "e"], 4) == {("a", "b", "c", "d"), ("b", "c", "d", "e")}
    assert ngrams(["a", "b"], 4) == {("a", "b")} and ngrams([], 4) == frozenset()
    assert jaccard(frozenset({1, 2, 3}), frozenset({2, 3, 4})) == 0.5
    assert jaccard(frozenset(), frozenset()) == 1.0
    assert max_similarity(frozenset({1}), []) == 0.0
    same = fingerprint("deduction", "def f(a):\n    return a * 2", ["3"])
    assert max_similarity(same, [fingerprint("abduction", "def h(q):\n    return q * 2", ["9"])]) == 1.0
    # induction compares its inputs (the program is the reference's)
    ind = fingerprint("induction", "def f(a):\n    return a", ["1", "2"])
    assert jaccard(ind, fingerprint("induction", "def g(b):\n    return b + 1", ["1", "2"])) == 1.0
    assert jaccard(ind, fingerprint("induction", "def f(a):\n    return a", ["[1, 2, 3]", "'x'"])) == 0.0
    assert fingerprint("induction", None, ["(1,2)"]) == fingerprint("induction", None, ["( 1, 2 )"])


def _task(tid, typ, program, inputs=("1",)):
    return Task(task_id=tid, type=typ, program=program, inputs=list(inputs), outputs=["1"] * len(inputs))


def test_proposal_similarities_against_references_and_the_buffer():
    copy = "def f(a):\n    return sorted(a)[::-1]"
    buffers = {"deduction": [_task("seed-d", "deduction", "def f(a):\n    return a")],
               "abduction": [_task("old-a", "abduction", "def g(x):\n    return sorted(x)[::-1]")], "induction": []}
    props = [Proposal(proposal_id=p, iteration=1, type="deduction", prompt="", completion="", format_ok=True,
                      reference_task_ids=refs) for p, refs in (("A", ["old-a"]), ("B", []), ("C", []))]
    vals = [Validation(proposal_id="A", type="deduction", valid=True, task=_task("tA", "deduction", copy)),
            Validation(proposal_id="B", type="deduction", valid=True, task=_task("tB", "deduction", copy)),
            Validation(proposal_id="C", type="deduction", valid=False, reason="error")]
    sims = proposal_similarities(props, vals, buffers)
    assert sims["A"] == 1.0  # a copy of its reference, names aside
    assert 0.0 < sims["B"] < 1.0  # only the identity seed of its type to compare with
    assert "C" not in sims  # invalid: no similarity, no penalty


# ----------------------------------------------------------------------------- the reward stage's levers


def _records():
    t = _task("tA", "deduction", "def f(a):\n    return a")
    props = [Proposal(proposal_id=p, iteration=1, type="deduction", prompt="", completion="", format_ok=ok,
                      completion_tokens=k) for p, ok, k in (("A", True, 10), ("B", True, 40), ("C", False, 48))]
    vals = [Validation(proposal_id="A", type="deduction", valid=True, task=t),
            Validation(proposal_id="B", type="deduction", valid=False, reason="error"),
            Validation(proposal_id="C", type="deduction", valid=False, reason="format")]
    rolls = [Rollout(rollout_id=f"tA-r{i}", task_id="tA", type="deduction", purpose="learnability", prompt="",
                     completion="", format_ok=True, correct=c, completion_tokens=8)
             for i, c in enumerate([True, False, False, False])]
    rolls += [Rollout(rollout_id=f"tr{i}", task_id="tA", type="deduction", purpose="train", prompt="", completion="",
                      format_ok=f, correct=c, completion_tokens=k)
              for i, (f, c, k) in enumerate([(True, True, 4), (True, False, 28), (False, False, 32)])]
    return props, vals, rolls


def test_levers_off_write_the_records_of_before():
    out = score(*_records(), RewardSection())
    keys = {"sample_id", "role", "type", "reward", "advantage", "solve_rate", "format_ok", "valid", "correct"}
    assert all(set(s.model_dump(mode="json")) == keys for s in out)
    assert [s.sample_id for s in out] == ["A", "B", "C", "tr0", "tr1", "tr2"]
    m = summarize(out).metrics
    assert not any(k.startswith(("control", "similarity", "length_penalty", "reused")) for k in m)


def test_diversity_penalty_lowers_the_reward_of_a_valid_proposal():
    cfg = RewardSection(diversity_penalty=0.4)
    out = {s.sample_id: s for s in score(*_records(), cfg, RewardLevers(similarity={"A": 0.5}))}
    assert out["A"].reward == pytest.approx(0.75 - 0.4 * 0.5) and out["A"].similarity == 0.5
    assert out["B"].reward == -1.0 and out["B"].similarity is None
    assert out["A"].model_dump(mode="json")["similarity"] == 0.5
    assert summarize(list(out.values())).metrics["similarity/deduction"] == 0.5


def test_overlong_penalty_by_hand():
    assert length_penalty(64, 128, 64) == 0.0
    assert length_penalty(96, 128, 64) == -0.5
    assert length_penalty(112, 128, 64) == -0.75
    assert length_penalty(128, 128, 64) == -1.0  # a truncated response
    assert length_penalty(10, 16, 64) == pytest.approx(-10 / 16)  # the window is capped at the budget
    props, vals, rolls = _records()
    out = {s.sample_id: s for s in score(props, vals, rolls, RewardSection(), RewardLevers(overlong=(48, 32, 16)))}
    # proposer budget 48: A (10 tokens) 0, B (40) -0.5, C (48, truncated) -1
    assert [out[k].length_penalty for k in "ABC"] == [0.0, -0.5, -1.0]
    assert [out[k].reward for k in "ABC"] == [0.75, -1.5, -2.0]
    # solver budget 32: 4 -> 0, 28 -> -0.75, 32 -> -1
    assert [out[f"tr{i}"].length_penalty for i in range(3)] == [0.0, -0.75, -1.0]
    assert [out[f"tr{i}"].reward for i in range(3)] == [1.0, -1.25, -2.0]
    assert summarize(list(out.values())).metrics["length_penalty/proposer"] == pytest.approx(-0.5)


def test_reused_learnability_rollouts_train_the_solver_with_their_own_baseline():
    out = score(*_records(), RewardSection(), RewardLevers(reuse_learnability=True))
    reused = [s for s in out if s.purpose == "learnability"]
    assert [s.sample_id for s in reused] == [f"tA-r{i}" for i in range(4)]
    assert [s.reward for s in reused] == [1.0, -0.5, -0.5, -0.5]
    mean, std = (1.0 - 1.5) / 4, math.sqrt((1.125**2 + 3 * 0.375**2) / 4)  # their own batch
    assert reused[0].advantage == pytest.approx((1.0 - mean) / (std + 1e-6))
    # the training batch keeps its advantages of before
    before = {s.sample_id: s.advantage for s in score(*_records(), RewardSection())}
    assert all(s.advantage == before[s.sample_id] for s in out if s.purpose is None)
    m = summarize(out).metrics
    assert m["reused_learnability/deduction"] == 4 and m["accuracy/deduction"] == pytest.approx(1 / 3)


def test_random_control_keeps_mean_and_spread_per_group():
    keys = ["a", "a", "a", "b", "b", "c", "a"]
    rewards = [1.0, -0.5, -1.0, 0.3, 0.3, 2.0, 1.0]
    out = random_control(keys, rewards, random.Random(7))
    assert out == random_control(keys, rewards, random.Random(7))  # seeded
    assert out != random_control(keys, rewards, random.Random(8))
    a = [out[i] for i, k in enumerate(keys) if k == "a"]
    a0 = [r for r, k in zip(rewards, keys, strict=True) if k == "a"]
    assert sum(a) / 4 == pytest.approx(sum(a0) / 4)
    assert _pstd(a) == pytest.approx(_pstd(a0))
    assert a != a0
    assert out[3:6] == [0.3, 0.3, 2.0]  # equal rewards and a group of one stay as they are


def _pstd(xs):
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def test_control_run_scores_random_rewards_and_says_so():
    props, vals, rolls = _records()
    cfg = load_config(sets=["reward.control=random"])
    levers = levers_for(cfg, 1)
    assert levers.control_seed is not None and levers.similarity is None and levers.overlong is None
    out = score(props, vals, rolls, cfg.reward, levers)
    plain = {s.sample_id: s.reward for s in score(props, vals, rolls, cfg.reward)}
    assert all(s.measured_reward == plain[s.sample_id] for s in out)
    solver = [s.reward for s in out if s.role == "solver"]
    assert solver != [plain[f"tr{i}"] for i in range(3)]
    assert sum(solver) / 3 == pytest.approx(sum(plain[f"tr{i}"] for i in range(3)) / 3)
    markers = run_markers("random")
    assert markers and markers[0].startswith(CONTROL_MARKER) and run_markers("none") == []
    assert summarize(out, markers).metrics["control"].startswith("RANDOM-REWARD CONTROL")


# ----------------------------------------------------------------------------- the update's levers


torch = pytest.importorskip("torch")


def test_decoupled_upper_clip_by_hand():
    from stages.training.losses import clipped_surrogate

    old = torch.zeros(4)
    logp = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.7]))
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0])
    loss, clipped = clipped_surrogate(logp, old, adv, 0.2, clip_high=0.28)
    # A>0 capped at 1.28 (not 1.2); the lower side is still 0.8
    assert loss.tolist() == pytest.approx([-1.28, 1.5, 0.8, -0.7])
    assert clipped.tolist() == [True, False, True, False]
    same, _ = clipped_surrogate(logp, old, adv, 0.2, clip_high=None)
    assert same.tolist() == pytest.approx([-1.2, 1.5, 0.8, -0.7])


def test_loss_aggregation_by_hand():
    from stages.training.losses import aggregate

    per = torch.tensor([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert float(aggregate(per, mask, "token", 3, 2)) == pytest.approx(2.0)  # (1 + 2 + 3) / 3
    assert float(aggregate(per, mask, "sequence", 3, 2)) == pytest.approx(2.25)  # (1.5 + 3) / 2
    # micro-batches add up to the batch's value: rows split over two calls
    parts = sum(float(aggregate(per[i : i + 1], mask[i : i + 1], "sequence", 3, 2)) for i in range(2))
    assert parts == pytest.approx(2.25)


def _lora_model():
    from test_training import tiny_model

    return tiny_model(dtype=torch.float64)


def _batch(n=6, seed=1, length=None):
    from test_training import make_batch

    batch = make_batch(n, seed)
    for i, s in enumerate(batch):
        s.group = f"deduction/{'proposer' if i % 2 else 'solver'}"
        if length is not None:
            s.response_ids = (s.response_ids * length)[:length]
    return batch


def _step(batch, **kw):
    from test_training import lora_params, ucfg

    from stages.training.state import build_optimizer
    from stages.training.step import update_step

    model = _lora_model()
    cfg = ucfg(**kw)
    stats = update_step(model, batch, cfg, build_optimizer(model.parameters(), cfg), pad_id=0)
    return stats, lora_params(model)


def _same(pa, pb):
    for name, p in pa.items():
        torch.testing.assert_close(pb[name], p, rtol=1e-9, atol=1e-12)


def test_sequence_aggregation_equals_token_mean_when_lengths_are_equal_and_differs_otherwise():
    (a, pa), (b, pb) = _step(_batch(length=5)), _step(_batch(length=5), loss_aggregation="sequence")
    assert a.pg_loss == pytest.approx(b.pg_loss, rel=1e-9)
    _same(pa, pb)
    (c, _), (d, _) = _step(_batch()), _step(_batch(), loss_aggregation="sequence")
    assert c.pg_loss != pytest.approx(d.pg_loss, rel=1e-6)


def test_overlong_mask_leaves_truncated_responses_out():
    batch = _batch()
    for s in batch[:2]:
        s.truncated = True
    (a, pa) = _step(batch, overlong="mask")
    (b, pb) = _step([s for s in batch if not s.truncated])
    assert a.overlong_masked == 2 and a.samples == 6 and a.trained_samples == 4 and b.overlong_masked is None
    assert a.tokens == b.tokens
    _same(pa, pb)
    (c, _) = _step(batch, overlong="keep")
    assert c.trained_samples == 6


def test_entropy_per_role_is_logged_with_or_without_the_bonus():
    for coef in (0.0, 0.01):
        stats, _ = _step(_batch(), entropy_coef=coef)
        roles = stats.entropy_by_role
        assert set(roles) == {"proposer", "solver"} and all(v > 0 for v in roles.values())
        d = stats.to_dict()
        assert d["entropy/proposer"] == roles["proposer"] and "entropy_by_role" not in d
        batch = _batch()
        tok = {r: sum(len(s.response_ids) for s in batch if s.role == r) for r in roles}
        whole = sum(roles[r] * tok[r] for r in roles) / sum(tok.values())
        assert whole == pytest.approx(stats.entropy, rel=1e-9)  # the token mean, split by role


def test_clip_high_equal_to_clip_ratio_is_the_symmetric_clip():
    (a, pa), (b, pb) = _step(_batch(), ppo_epochs=3), _step(_batch(), ppo_epochs=3, clip_high=0.2)
    assert a.clip_frac == b.clip_frac > 0
    _same(pa, pb)
    (c, _) = _step(_batch(), ppo_epochs=3, clip_high=10.0)
    assert c.clip_frac < a.clip_frac  # the upper side no longer clips


# ----------------------------------------------------------------------------- a loop with every lever on


DED = "<think> sum </think>\n<answer>\n```python\ndef f(x):\n    return sum(x)\n```\n```input\n[1, 2, 3]\n```\n</answer>"
IND = ("<think> ok </think>\n<answer>\n```input\n1\n```\n```input\n'a'\n```\n```input\n[2]\n```\n```input\nNone\n```\n"
       "```message\nsame\n```\n</answer>")


def test_tiny_loop_with_every_lever_on(tmp_path, azr, tiny_model, monkeypatch):
    """Two iterations of the tiny config with every lever on. The tiny model writes noise, so the
    proposer's completions are replaced by well-formed ones (its tokens stay what it sampled):
    valid tasks, learnability rollouts, similarities and solve rates all occur."""
    from conftest import TINY

    from stages import loop, propose
    from stages import seed as seed_stage
    from stages.session import Session

    real = propose.generate

    def scripted(policy, queries, gen, seed, progress=None):
        out = real(policy, queries, gen, seed, progress)
        for k, (q, c) in enumerate(zip(queries, out.completions, strict=True)):
            text = IND if q.type == "induction" else DED.replace("sum(x)", f"sum(x) + {k % 3}")
            pre = policy.answer_prefix
            c.text = text[len(pre):] if pre and text.startswith(pre) else text
        return out

    monkeypatch.setattr(propose, "generate", scripted)
    run = seed_stage.run(tmp_path / "levers", load_config(TINY, ALL_ON))
    with Session(run) as session:
        loop.run(run, 2, session)
    assert run.completed_iterations() == 2
    for n in (1, 2):
        reward = run.summary(n, "reward").metrics
        assert reward["control"].startswith(CONTROL_MARKER)
        samples = run.read(n, "reward", "samples.jsonl", Sample)
        assert all(s.measured_reward is not None and s.length_penalty is not None for s in samples)
        assert any(s.similarity is not None for s in samples if s.role == "proposer")
        learn = [r.rollout_id for r in run.read(n, "solve", "rollouts.jsonl", Rollout) if r.purpose == "learnability"]
        assert learn and [s.sample_id for s in samples if s.purpose == "learnability"] == learn
        update = run.summary(n, "update").metrics
        assert "entropy/proposer" in update and "entropy/solver" in update
    solve = run.summary(2, "solve").metrics
    assert solve["band/unmeasured"] > 0 and solve["band/in"] + solve["band/out"] > 0  # iteration 1's tasks measured
    status = azr("status", "--run", run.path)
    assert status.code == 0 and CONTROL_MARKER in status.out
    assert azr("status", "--run", run.path, "--json").out.count(CONTROL_MARKER) == 1
    assert azr("report", "--run", run.path).code == 0
    assert CONTROL_MARKER in (run.path / "report" / "README.md").read_text()
