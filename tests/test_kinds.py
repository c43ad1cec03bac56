"""Task kinds are objects in a registry: a fourth kind, defined and registered here and nowhere
else, goes through a whole iteration of the tiny config (seed, propose, validate, solve, reward,
update) with the paper's three."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

import pytest
from conftest import TINY

from stages.method.kinds import KINDS, kind_of, register, unregister
from stages.method.kinds.base import ProgramKind, Ref, TaskView, fence, require
from stages.method.prompts import answer, think_then_answer


class OutputType(ProgramKind):
    """The solver sees a program and an input and names the type of what ``f`` returns
    (``'list'``, ``'int'``): a kind of the official code's family (it predicts a property of the
    run, as its error-prediction type does), checked by value on the host."""

    name = "typing"
    short = "typ"
    solver_block = "output"
    solver_demo = Ref(program="def f(a):\n    return [a]", inputs=["3"], outputs=["[3]"])
    goal = "The solver will see your program and your input and must name the type of the returned value."

    def solver_prompt(self, *, program: str = "", inputs: Sequence[str] = (), outputs: Sequence[str] = (),
                      message: str = "") -> str:
        require(self.name, program=program, input=inputs)
        return "\n\n".join([
            "Name the type of the value this Python program returns for the input below.",
            fence("python", program), fence("input", inputs[0]),
            think_then_answer("trace the code", "the type's name as a string literal, such as 'int'"),
        ])

    def solver_answer(self, ref: Ref) -> str:
        return answer("f wraps its argument in a list.", ("output", self.gold_answer(ref)))

    def gold_answer(self, task: TaskView | Ref) -> str:
        return repr(type(ast.literal_eval(task.outputs[0])).__name__)

    def answer_check(self, task: TaskView, prediction: str) -> Any:
        from sandbox.tasks import DeductionAnswer

        return DeductionAnswer(gold_output=self.gold_answer(task), predicted=prediction)


@pytest.fixture
def fourth_kind():
    kind = register(OutputType())
    yield kind
    unregister(kind.name)


def test_registry_refuses_a_taken_name_or_short_code():
    with pytest.raises(ValueError, match="already registered"):
        register(type("Again", (OutputType,), {"name": "deduction"})())
    with pytest.raises(ValueError, match="short code 'ded' is taken"):
        register(type("Clash", (OutputType,), {"name": "dedication", "short": "ded"})())
    with pytest.raises(ValueError, match="unknown task type 'typing'"):
        kind_of("typing")


def test_the_fourth_kind_parses_and_checks_its_answers(fourth_kind, tmp_path):
    from stages.method.tasks import proposal_id

    assert list(KINDS)[-1] == "typing" and proposal_id(1, "typing", 2) == "000001-typ-002"
    parsed = fourth_kind.parse_solver("<think> t </think>\n<answer>\n```output\n'list'\n```\n</answer>")
    assert parsed.format_ok and parsed.prediction == "'list'"
    task = Ref(program="def f(a):\n    return [a]", inputs=["3"], outputs=["[3]"])
    assert fourth_kind.answer_check(task, "'list'").plan(None).correct
    assert not fourth_kind.answer_check(task, "'int'").plan(None).correct


def test_an_iteration_runs_with_a_fourth_kind(fourth_kind, azr, tmp_path, tiny_model):
    from stages.rundir.buffers import seed_buffer
    from stages.rundir.manifest import open_run
    from stages.rundir.records import Proposal, Rollout, Task

    path = tmp_path / "run"
    result = azr("loop", "--run", path, "--config", TINY, "--iters", 1, "--json")
    assert result.code == 0, result.err
    run = open_run(path)[0]
    assert run.completed_iterations() == 1
    assert [t.task_id for t in seed_buffer(run) if t.type == "typing"] == ["seed-typing-0"]
    proposals = run.read(1, "propose", "proposals.jsonl", Proposal)
    assert {p.type for p in proposals} == {"deduction", "abduction", "induction", "typing"}
    assert sum(p.type == "typing" for p in proposals) == run.config.run.batch_size
    assert all(p.proposal_id.split("-")[1] == "typ" for p in proposals if p.type == "typing")
    rollouts = run.read(1, "solve", "rollouts.jsonl", Rollout)
    assert any(r.type == "typing" and r.purpose == "train" for r in rollouts)
    assert "train/count" in run.summary(1, "solve").metrics
    assert "valid/typing" in run.summary(1, "validate").metrics
    tasks = run.read(1, "validate", "tasks.jsonl", Task)
    assert all(t.type in KINDS for t in tasks)
