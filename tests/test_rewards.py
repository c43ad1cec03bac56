"""Rewards of both roles, case by case, and TRR++ advantages of a hand-made batch."""

import math

import pytest

from stages.config.schema import RewardSection
from stages.method.rewards import group_stats, proposer_reward, solver_reward, trr_advantages
from stages.rundir.records import Sample

CFG = RewardSection()


@pytest.mark.parametrize(
    ("format_ok", "correct", "expected"),
    [(True, True, 1.0), (True, False, -0.5), (False, False, -1.0), (False, True, -1.0)],
)
def test_solver_reward_table(format_ok, correct, expected):
    assert solver_reward(format_ok, correct, CFG) == expected


@pytest.mark.parametrize(
    ("valid", "format_ok", "solve_rate", "expected"),
    [
        (False, False, None, -1.0),  # badly formatted
        (True, False, 0.5, -1.0),  # format error wins over anything else
        (False, True, None, -1.0),  # invalid
        (True, True, 0.0, 0.0),  # nobody solves it: trivial
        (True, True, 1.0, 0.0),  # everybody solves it: trivial
        (True, True, 0.25, 0.75),  # learnability 1 - r
        (True, True, 0.875, 0.125),
    ],
)
def test_proposer_reward_table(valid, format_ok, solve_rate, expected):
    assert proposer_reward(valid, format_ok, solve_rate, CFG) == pytest.approx(expected)


def test_trivial_task_reward_follows_config():
    official = RewardSection(trivial_task_reward=-0.5, format_error=-2.0, proposer_invalid=-1.5)
    assert proposer_reward(True, True, 0.0, official) == -0.5
    assert proposer_reward(True, True, 1.0, official) == -0.5
    assert proposer_reward(True, True, 0.5, official) == 0.5
    assert proposer_reward(False, True, None, official) == -1.5
    assert proposer_reward(True, False, None, official) == -2.0


def test_valid_proposal_needs_a_solve_rate():
    with pytest.raises(ValueError, match="solve rate"):
        proposer_reward(True, True, None, CFG)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        proposer_reward(True, True, 1.5, CFG)


def test_trr_advantages_per_type_and_role():
    eps = 1e-6
    batch = [
        ("deduction", "solver", 1.0),
        ("deduction", "solver", -0.5),
        ("deduction", "solver", -1.0),
        ("deduction", "proposer", 0.75),
        ("deduction", "proposer", 0.25),
        ("abduction", "solver", 1.0),  # a group of one
        ("abduction", "proposer", 0.5),
        ("abduction", "proposer", 0.5),  # equal rewards
        ("induction", "solver", -1.0),
        ("induction", "solver", 1.0),
        ("induction", "proposer", -1.0),
        ("induction", "proposer", 0.0),
        ("induction", "proposer", 0.5),
        ("induction", "proposer", 0.5),
    ]
    adv = trr_advantages(batch, eps=eps)

    # deduction/solver: mean -1/6, population std sqrt(((7/6)^2 + (1/3)^2 + (5/6)^2) / 3)
    m = -1 / 6
    s = math.sqrt(((1 - m) ** 2 + (-0.5 - m) ** 2 + (-1 - m) ** 2) / 3)
    assert adv[0:3] == pytest.approx([(1 - m) / (s + eps), (-0.5 - m) / (s + eps), (-1 - m) / (s + eps)])
    # deduction/proposer: mean 0.5, std 0.25 -> ±1 (up to eps)
    assert adv[3:5] == pytest.approx([0.25 / (0.25 + eps), -0.25 / (0.25 + eps)])
    # a group of one and a group of equal rewards get 0 exactly
    assert adv[5] == 0.0
    assert adv[6:8] == [0.0, 0.0]
    # induction/solver: mean 0, std 1
    assert adv[8:10] == pytest.approx([-1 / (1 + eps), 1 / (1 + eps)])
    # induction/proposer: mean 0, std sqrt((1 + 0 + 0.25 + 0.25) / 4)
    s = math.sqrt(1.5 / 4)
    assert adv[10:14] == pytest.approx([-1 / (s + eps), 0.0, 0.5 / (s + eps), 0.5 / (s + eps)])
    # every (type, role) group has mean advantage 0
    stats = group_stats(batch)
    assert len(stats) == 6
    for key in stats:
        group = [a for (t, r, _), a in zip(batch, adv, strict=True) if (t, r) == key]
        assert math.fsum(group) / len(group) == pytest.approx(0.0, abs=1e-12)


def test_trr_advantages_accept_records_and_keep_order():
    rows = [
        Sample(sample_id="a", role="solver", type="deduction", reward=1.0, advantage=0.0),
        Sample(sample_id="b", role="proposer", type="deduction", reward=1.0, advantage=0.0),
        Sample(sample_id="c", role="solver", type="deduction", reward=-1.0, advantage=0.0),
    ]
    adv = trr_advantages(rows)
    # the proposer is alone in its group; the two solvers are ±1 around their own mean
    assert adv == pytest.approx([1.0, 0.0, -1.0], abs=1e-5)
    tuples = [(r.type, r.role, r.reward) for r in rows]
    assert trr_advantages(tuples) == adv


def test_trr_advantages_empty():
    assert trr_advantages([]) == []
