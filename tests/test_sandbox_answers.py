"""Answer checks for the solve stage: abduction and induction run in the sandbox, batched."""

from __future__ import annotations

from sandbox import (
    AbductionAnswer,
    DeductionAnswer,
    InductionAnswer,
    SandboxConfig,
    check_abduction,
    check_answers,
    check_induction,
)

CFG = SandboxConfig(workers=2, timeout_s=1.0)
SORT = "def f(xs):\n    return sorted(xs)"


def test_abduction_accepts_any_input_that_works(sb):
    assert check_abduction(sb, SORT, "[1, 2, 3]", "[3, 1, 2]")
    assert check_abduction(sb, SORT, "[1, 2, 3]", "[2, 3, 1]")


def test_abduction_rejects_a_wrong_input(sb):
    assert not check_abduction(sb, SORT, "[1, 2, 3]", "[3, 1]")


def test_abduction_rejects_an_injected_input(sb):
    assert not check_abduction(sb, SORT, "[1, 2, 3]", "[3, 2, 1]) or f([1, 2, 3]")


def test_induction_reports_the_fraction(sb):
    ok, frac = check_induction(sb, "def f(a):\n    return a + 1", ["1", "2", "3", "4"], ["2", "3", "4", "6"], CFG)
    assert not ok and frac == 0.75


def test_induction_all_hidden_pairs_pass(sb):
    assert check_induction(sb, "def f(a):\n    return a * 2", ["1", "'x'"], ["2", "'xx'"], CFG) == (True, 1.0)


def test_induction_with_banned_program_fails_without_running(sb):
    ok, frac = check_induction(sb, "import os\ndef f(a):\n    return a", ["1"], ["1"], CFG)
    assert (ok, frac) == (False, 0.0)


def test_mixed_batch_in_one_call(sb):
    answers = [
        DeductionAnswer(gold_output="[1, 2]", predicted="[1, 2]"),
        AbductionAnswer(program=SORT, gold_output="[1, 2]", proposed_input="[2, 1]"),
        InductionAnswer(program="def f(a):\n    while True:\n        pass", inputs=["1"], outputs=["1"]),
        DeductionAnswer(gold_output="3", predicted="3.0"),
    ]
    got = check_answers(sb, answers, CFG)
    assert [c.correct for c in got] == [True, True, False, False]
    assert got[2].status == "timeout"
