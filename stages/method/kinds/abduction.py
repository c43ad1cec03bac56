"""Abduction: the solver sees a program and an output and finds an input that produces it. Any
such input counts: it is run in the sandbox and its output compared by value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stages.method.kinds.base import ProgramKind, Ref, TaskView, fence, require
from stages.method.prompts import INPUT_FORMAT, answer, think_then_answer


class Abduction(ProgramKind):
    name = "abduction"
    short = "abd"
    solver_block = "input"
    solver_demo = Ref(program="def f(s):\n    return s.upper() + '!'", inputs=["'hi'"], outputs=["'HI!'"])
    goal = ("The solver will see your program and its output for your input and must find an input "
            "that produces that output. Make the program hard to invert: recovering a suitable input "
            "from the output alone should take real reasoning (not the identity, not a constant), "
            "while the program stays short and fast.")

    def solver_prompt(self, *, program: str = "", inputs: Sequence[str] = (), outputs: Sequence[str] = (),
                      message: str = "") -> str:
        """The program and ``outputs[0]`` are shown; an input is asked."""
        require(self.name, program=program, output=outputs)
        return "\n\n".join([
            "Find an input for which this Python program returns the output below. "
            "Any input that produces it counts.",
            fence("python", program),
            fence("output", outputs[0]),
            INPUT_FORMAT,
            think_then_answer("reason backwards from the output and check your input by tracing the code",
                              "the input as Python literals (strings in quotes)"),
        ])

    def solver_answer(self, ref: Ref) -> str:
        return answer("I look for an input that gives this output.", ("input", ref.inputs[0]))

    def gold_answer(self, task: TaskView) -> str:
        return task.inputs[0]

    def answer_check(self, task: TaskView, prediction: str) -> Any:
        from sandbox.tasks import AbductionAnswer

        return AbductionAnswer(program=task.program, gold_output=task.outputs[0], proposed_input=prediction)
