"""Deduction: the solver sees a program and an input and predicts the output. The answer is
compared on the host, by value (safe literal parsing); no code runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stages.method.kinds.base import ProgramKind, Ref, TaskView, fence, require
from stages.method.prompts import answer, think_then_answer


class Deduction(ProgramKind):
    name = "deduction"
    short = "ded"
    solver_block = "output"
    solver_demo = Ref(program="def f(a, b):\n    return [x * b for x in a]", inputs=["[1, 2], 3"], outputs=["[3, 6]"])
    goal = ("The solver will see your program and your input and must predict the output. Make the "
            "output non-trivial to work out: it should take careful step-by-step tracing of the code "
            "(loops, branches, string or list manipulation), while the program stays short and fast.")

    def solver_prompt(self, *, program: str = "", inputs: Sequence[str] = (), outputs: Sequence[str] = (),
                      message: str = "") -> str:
        """The program and ``inputs[0]`` are shown; the output is asked."""
        require(self.name, program=program, input=inputs)
        return "\n\n".join([
            "Predict what this Python program returns when `f` is called with the input below "
            "as its argument list.",
            fence("python", program),
            fence("input", inputs[0]),
            think_then_answer("trace the code on this input line by line",
                              "the returned value as a Python literal, as `repr` prints it (strings in quotes)"),
        ])

    def solver_answer(self, ref: Ref) -> str:
        return answer("I trace the code on the input.", ("output", ref.outputs[0]))

    def gold_answer(self, task: TaskView) -> str:
        return task.outputs[0]

    def answer_check(self, task: TaskView, prediction: str) -> Any:
        from sandbox.tasks import DeductionAnswer

        return DeductionAnswer(gold_output=task.outputs[0], predicted=prediction)
