"""Each stage on the tiny model and the real sandbox, over a real run directory.

The tiny model writes noise, so tests that need valid tasks write the proposer's completions by
hand into `iters/N/propose/` (real files, real parser, real sandbox) and run the later stages on them.
"""

import pytest
from conftest import TINY

from stages import propose, reward, solve, update, validate
from stages import seed as seed_stage
from stages.config.layers import load_config
from stages.errors import RunError
from stages.rundir.jsonl import read_jsonl
from stages.rundir.manifest import open_run
from stages.rundir.records import Proposal, Rollout, Sample, StageSummary, Task, Validation
from stages.session import Session

GOOD_DED = "<think> double it </think>\n<answer>\n```python\ndef f(x):\n    return [v * 2 for v in x]\n```\n```input\n[1, 2, 3]\n```\n</answer>"
BANNED = "<think> x </think>\n<answer>\n```python\nimport os\ndef f(x):\n    return os.getcwd()\n```\n```input\n1\n```\n</answer>"
NONDET = "<think> x </think>\n<answer>\n```python\ndef f(x):\n    return str({'a', 'b', 'c', 'd', 'e'})\n```\n```input\n1\n```\n</answer>"
GOOD_ABD = "<think> rev </think>\n<answer>\n```python\ndef f(s):\n    return s[::-1]\n```\n```input\n'abc'\n```\n</answer>"
GOOD_IND = "<think> varied </think>\n<answer>\n```input\n1\n```\n```input\n2\n```\n```input\n3\n```\n```input\n4\n```\n```message\nit squares\n```\n</answer>"
NOISE = "lorem ipsum"


# Each fixture builds the state its tests need, on top of the one before: every test passes alone
# (`pytest tests/test_stages.py::test_x`) and in any order.


@pytest.fixture(scope="module")
def session(tmp_path_factory, tiny_model):
    run = seed_stage.run(tmp_path_factory.mktemp("stages") / "run", load_config(TINY))
    with Session(run) as s:
        yield s


@pytest.fixture(scope="module")
def proposed(session):
    """`session` with iteration 1's proposals written; the summary of that first propose run."""
    return propose.run(session.run, 1, session)


def _proposal(i, typ, text, program=None):
    from stages.method.kinds import parse_proposal

    parsed = parse_proposal(text, typ, n_inputs=4)
    return Proposal(proposal_id=f"000001-{typ[:3]}-{i:03d}", iteration=1, type=typ, prompt="p", completion=text,
                    program=program if typ == "induction" else parsed.program, inputs=parsed.inputs,
                    message=parsed.message, format_ok=parsed.format_ok, format_error=parsed.format_error,
                    prompt_ids=[1, 2, 3], completion_ids=[4, 5])


def test_propose_writes_b_per_type_and_refuses_a_second_run(session, proposed):
    run = session.run
    summary = proposed
    records = run.read(1, "propose", "proposals.jsonl", Proposal)
    assert summary.count == len(records) == 3 * run.config.run.batch_size
    assert {r.type for r in records} == {"deduction", "abduction", "induction"}
    assert all(r.prompt and r.completion_ids for r in records)
    assert all(r.reference_task_ids for r in records)
    with pytest.raises(RunError, match="already complete"):
        run.resolve_iter("propose", 1, force=False)


def test_propose_force_with_same_seed_gives_same_records(session, proposed):
    run = session.run
    before = (run.stage_dir(1, "propose") / "proposals.jsonl").read_bytes()
    propose.run(run, 1, session, force=True)
    assert (run.stage_dir(1, "propose") / "proposals.jsonl").read_bytes() == before


@pytest.fixture(scope="module")
def handmade(tmp_path_factory, tiny_model):
    """A run whose iteration-1 proposals were written by hand: valid, banned, nondeterministic,
    badly formatted, one per kind."""
    run = seed_stage.run(tmp_path_factory.mktemp("hand") / "run", load_config(TINY))
    identity = "def f(a):\n    return a"
    squares = "def f(a):\n    return a * a"
    proposals = [
        _proposal(0, "deduction", GOOD_DED), _proposal(1, "deduction", BANNED),
        _proposal(2, "deduction", NONDET), _proposal(3, "deduction", NOISE),
        _proposal(0, "abduction", GOOD_ABD), _proposal(1, "abduction", NOISE),
        _proposal(0, "induction", GOOD_IND, program=squares), _proposal(1, "induction", NOISE, program=identity),
    ]
    run.write_stage(1, "propose", {"proposals.jsonl": proposals}, StageSummary())
    with Session(run) as s:
        validate.run(run, 1, s)
        yield s


@pytest.fixture(scope="module")
def solved(handmade):
    """`handmade` with iteration 1's solve stage done; its summary."""
    return solve.run(handmade.run, 1, handmade)


@pytest.fixture(scope="module")
def updated(handmade, solved):
    """`handmade` with iteration 1 complete (reward and update done)."""
    reward.run(handmade.run, 1)
    update.run(handmade.run, 1, handmade)
    return handmade


def test_validate_keeps_valid_tasks_and_reasons(handmade):
    run = handmade.run
    v = {x.proposal_id: x for x in run.read(1, "validate", "validations.jsonl", Validation)}
    assert v["000001-ded-000"].valid and v["000001-ded-000"].task.outputs == ["[2, 4, 6]"]
    assert v["000001-ded-001"].reason == "banned"
    assert v["000001-ded-002"].reason == "nondeterministic"
    assert v["000001-ded-003"].reason == "format"
    assert v["000001-abd-000"].task.outputs == ["'cba'"]
    ind = v["000001-ind-000"].task
    assert ind.outputs == ["1", "4", "9", "16"] and ind.n_shown == 2 and ind.message == "it squares"
    tasks = run.read(1, "validate", "tasks.jsonl", Task)
    assert [t.proposal_id for t in tasks] == ["000001-ded-000", "000001-abd-000", "000001-ind-000"]


def test_buffer_grows_with_valid_tasks(handmade):
    from stages.rundir.buffers import load_buffers

    sizes = {t: len(b) for t, b in load_buffers(handmade.run, 1).items()}
    assert sizes == {"deduction": 2, "abduction": 2, "induction": 2}


def test_solve_checks_every_answer(handmade, solved):
    run = handmade.run
    summary = solved
    rollouts = run.read(1, "solve", "rollouts.jsonl", Rollout)
    cfg = run.config
    learn = [r for r in rollouts if r.purpose == "learnability"]
    train = [r for r in rollouts if r.purpose == "train"]
    assert len(learn) == 3 * cfg.solve.rollouts and len(train) == 3 * cfg.run.batch_size
    # new tasks come first in each type's training batch
    assert train[0].task_id == "t000001-ded-000"
    assert summary.metrics["learnability/count"] == len(learn)
    assert all(not r.correct for r in rollouts if not r.format_ok)


def test_solver_answers_are_judged_by_value(handmade):
    """The checking path itself, with answers written by hand."""
    from stages.model.turns import Query
    from stages.solve import judge_answers

    tasks = {t.task_id: t for t in handmade.run.read(1, "validate", "tasks.jsonl", Task)}
    ded, abd, ind = tasks["t000001-ded-000"], tasks["t000001-abd-000"], tasks["t000001-ind-000"]
    jobs = [Query(i, t.type, [], task=t, purpose="train") for i, t in zip("abcde", [ded, ded, abd, ind, ind], strict=True)]
    preds = ["[2,4,6]", "[2, 4, 7]", "'abc'", "def f(a):\n    return a ** 2", "def f(a):\n    return a + a"]
    verdicts = judge_answers(jobs, preds, handmade.sandbox(), handmade.run.config)
    assert [v.correct for v in verdicts] == [True, False, True, True, False]


def test_reward_then_update_writes_a_loadable_checkpoint(updated):
    run = updated.run
    samples = run.read(1, "reward", "samples.jsonl", Sample)
    props = [s for s in samples if s.role == "proposer"]
    assert {s.sample_id: s.reward for s in props}["000001-ded-001"] == -1.0
    ckpt = run.checkpoint_dir(1)
    assert (ckpt / "adapter_config.json").exists() and (ckpt / "meta.json").exists()
    assert run.completed_iterations() == 1
    # the policy of iteration 2 loads from it in a fresh session
    with Session(open_run(run.path)[0]) as fresh:
        assert fresh.checkpoint_for(2) == ckpt
        fresh.policy_for(2)


def test_reward_scores_by_id_with_hand_computed_advantages():
    from stages.reward import score

    cfg = load_config().reward
    t = Task(task_id="tA", type="deduction", program="def f(a):\n    return a", inputs=["1"], outputs=["1"])
    props = [Proposal(proposal_id=p, iteration=1, type="deduction", prompt="", completion="", format_ok=ok)
             for p, ok in (("A", True), ("B", True), ("C", False))]
    vals = [Validation(proposal_id="A", type="deduction", valid=True, task=t),
            Validation(proposal_id="B", type="deduction", valid=False, reason="error"),
            Validation(proposal_id="C", type="deduction", valid=False, reason="format")]
    rolls = [Rollout(rollout_id=f"tA-r{i}", task_id="tA", type="deduction", purpose="learnability", prompt="",
                     completion="", format_ok=True, correct=c) for i, c in enumerate([True, False, False, False])]
    out = {s.sample_id: s for s in score(props, vals, rolls, cfg)}
    assert out["A"].reward == 0.75 and out["B"].reward == -1.0 and out["C"].reward == -1.0
    mean = (0.75 - 2) / 3
    std = (((0.75 - mean) ** 2 + 2 * (-1 - mean) ** 2) / 3) ** 0.5
    assert out["A"].advantage == pytest.approx((0.75 - mean) / (std + cfg.advantage_eps))


def test_checkpoint_retention():
    from stages.update import kept_checkpoints

    assert kept_checkpoints(list(range(1, 8)), 2, 3) == {3, 6, 7}
    assert kept_checkpoints([1], 2, 0) == {1}


def test_read_after_stage_missing_is_clear(session):
    with pytest.raises(RunError, match="has not completed"):
        session.run.read(5, "solve", "rollouts.jsonl", Rollout)


def test_records_survive_round_trip(session, proposed):
    p = session.run.stage_dir(1, "propose") / "proposals.jsonl"
    assert len(read_jsonl(p, Proposal)) == 3 * session.run.config.run.batch_size


def test_export_merges_the_adapter(updated, tmp_path, azr):
    import torch
    from transformers import AutoModelForCausalLM

    run = updated.run
    assert run.is_done(1, "update")
    r = azr("export", "--run", run.path, "--out", tmp_path / "exported", "--json")
    assert r.code == 0, r.err
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "exported")
    with Session(open_run(run.path)[0]) as fresh:
        policy = fresh.policy_for(2)  # base + the adapter of iteration 1
        ids = torch.tensor([[1, 2, 3, 4, 5]])
        with torch.no_grad():
            want = policy.model(input_ids=ids).logits
            got = merged(input_ids=ids).logits
    # merged W + BA against W·x + B(A·x): equal up to rounding, measured against the logits' scale
    assert (want - got).abs().max() <= 1e-5 * want.abs().max()
    r = azr("export", "--run", run.path, "--out", tmp_path / "exported")
    assert r.code == 1 and "not empty" in r.err


def test_propose_with_demonstrations(tmp_path, tiny_model):
    cfg = load_config(TINY, ["propose.demonstrations=true", "solve.demonstrations=true"])
    run = seed_stage.run(tmp_path / "run", cfg)
    with Session(run) as s:
        propose.run(run, 1, s)
    records = run.read(1, "propose", "proposals.jsonl", Proposal)
    ded = next(r for r in records if r.type == "deduction")
    assert "[assistant]" in ded.prompt and "def f(a):\n    return a" in ded.prompt


def test_tensorboard_events_are_written(tmp_path):
    from stages.monitor.tracking import Tracker

    run = seed_stage.run(tmp_path / "run", load_config(TINY, ["log.tensorboard=true"]))
    tracker = Tracker(run)
    tracker.log(1, "propose", {"format_ok": 0.5, "tokens": 12, "note": "text is skipped"})
    tracker.close()
    events = list((run.path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_ppo_iteration_trains_a_value_head(tmp_path, tiny_model):
    from stages import loop

    run = seed_stage.run(tmp_path / "run", load_config(TINY, ["update.algorithm=ppo"]))
    with Session(run) as s:
        loop.run(run, 1, s)
        assert s.algorithm.value_head is not None
    ckpt = run.checkpoint_dir(1)
    assert (ckpt / "value_head.safetensors").exists()
    assert "value_loss" in run.summary(1, "update").metrics
    with Session(open_run(run.path)[0]) as fresh:  # the next iteration restores it
        fresh.trainer_for(2)
        assert fresh.algorithm.value_head is not None


def test_prune_checkpoints_keeps_last_and_every(tmp_path):
    from stages.update import prune_checkpoints

    run = seed_stage.run(tmp_path / "run", load_config(TINY, ["update.keep_last=1", "update.keep_every=2"]))
    for i in range(1, 6):
        run.checkpoint_dir(i).mkdir(parents=True)
    prune_checkpoints(run)
    assert sorted(p.name for p in (run.path / "checkpoints").iterdir()) == ["000002", "000004", "000005"]
