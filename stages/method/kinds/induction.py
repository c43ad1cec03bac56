"""Induction: the proposer is given a program (from the buffers of the kinds that propose
programs) and writes N inputs and a message; the solver sees the first ``n_shown`` (input,
output) pairs and the message, writes the program, and is checked on the hidden pairs in the
sandbox."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from stages.method import parsers as p
from stages.method.kinds.base import IDENTITY_PROGRAM, T, TaskKind, TaskView, identity_output, require
from stages.method.prompts import INPUT_FORMAT, PROGRAM_RULES, Ref, Turn, answer, fence, think_then_answer

SEED_INPUTS = [
    '"Hello world"', "42", "[1, 2, 3]", "{'a': 1, 'b': [2, 3]}", "(2.5, None)",
    "True", "''", "-7", "[[], {}]", "'multi\\nline'", "3.0e-3", "(1, (2, (3,)))",
]
"""The seed task's inputs: literals of varied types (more, when N asks for them, are integers)."""
SEED_MESSAGE = "The function gives back exactly what it is given."


class Induction(TaskKind):
    name = "induction"
    short = "ind"
    proposer_blocks = ("input", "message")
    solver_block = "python"
    solver_demo = Ref(program="def f(n):\n    return n * n + 1", inputs=["2", "5"], outputs=["5", "26"],
                      message="It squares the number and adds one.")
    proposes_program = False

    # ------------------------------------------------------------------------- proposer

    def draw_references(self, own: Sequence[T], programs: Sequence[T], k: int, rng: random.Random,
                        demonstrations: bool) -> tuple[list[T], T | None]:
        """One program to give inputs for; with demonstrations, one task of the buffer to show as a
        worked exchange."""
        refs = [rng.choice(programs)]
        demos = own if demonstrations else []
        return refs, (rng.choice(demos) if demos else None)

    def shortens_references(self) -> bool:
        return False  # the one program is the task

    def proposer_prompt(self, references: Sequence[Ref], n_inputs: int = 10, rules: str = "") -> str:
        """``references`` holds exactly one program; the proposer gives ``n_inputs`` inputs and a message."""
        if len(references) != 1:
            raise ValueError(f"an induction proposal shows exactly one program, got {len(references)}")
        if n_inputs < 1:
            raise ValueError(f"n_inputs must be at least 1, got {n_inputs}")
        return "\n\n".join([
            "You write Python puzzles for a code-reasoning test.",
            "The solver will see some of your inputs with this program's outputs for them, plus "
            "your message, and must write the program; it is then checked on the inputs it did "
            "not see. Choose inputs that together reveal what the function does: varied, "
            "covering its different cases.",
            fence("python", references[0].program),
            INPUT_FORMAT,
            f"Give {n_inputs} different inputs for `f` and a message: one or two sentences hinting at "
            "what `f` does, without giving the code. "
            + think_then_answer("work out what f does and which inputs show its cases",
                                f"{n_inputs} ```input blocks, each holding one input, then a ```message "
                                "block holding your hint") + " The answer looks like this:",
            "\n".join(["<answer>", *(fence("input", f"<input {i}>") for i in range(1, n_inputs + 1)),
                       fence("message", "<your hint>"), "</answer>"]),
        ])

    def proposer_turns(self, references: Sequence[Ref], n_inputs: int = 10, rules: str = "",
                       demo: Ref | None = None) -> list[Turn]:
        """``demo`` (an induction task of the buffer) is shown first as a worked exchange."""
        final = self.proposer_prompt(references, n_inputs)
        if demo is None or len(demo.inputs) < n_inputs or not demo.message:
            return [("user", final)]
        return [("user", self.proposer_prompt([demo], n_inputs)),
                ("assistant", self.proposer_answer(demo, n_inputs)), ("user", final)]

    def proposer_answer(self, ref: Ref, n_inputs: int = 10) -> str:
        inputs = [("input", x) for x in ref.inputs[:n_inputs]]
        return answer("Inputs that show the different cases of f.", *inputs, ("message", ref.message))

    def read_proposal(self, scan: p.Scan, n_inputs: int) -> tuple[str | None, list[str], str | None]:
        """The first ``n_inputs`` distinct inputs and the last message; the program was given."""
        inputs = p.distinct_inputs(p.blocks(scan, "input"))[:n_inputs]
        return None, inputs, next(iter(reversed(p.blocks(scan, "message"))), None)

    def proposal_program(self, written: str | None, references: Sequence[Any]) -> str | None:
        return references[0].program

    def block_problem(self, role: str, block: str, blocks: list[str], n_inputs: int) -> str | None:
        if role == "proposer" and block == "input":
            got = len(p.distinct_inputs(blocks))
            return f"{got} distinct non-empty ```input blocks, {n_inputs} needed" if got < n_inputs else None
        return super().block_problem(role, block, blocks, n_inputs)

    def n_shown(self, shown: int) -> int:
        return shown

    # ------------------------------------------------------------------------- solver

    def shown(self, task: TaskView) -> dict[str, Any]:
        """Only the first ``n_shown`` pairs, and the message."""
        k = task.n_shown
        return {"inputs": task.inputs[:k], "outputs": task.outputs[:k], "message": task.message}

    def solver_prompt(self, *, program: str = "", inputs: Sequence[str] = (), outputs: Sequence[str] = (),
                      message: str = "") -> str:
        """The shown (input, output) pairs and the message; the program is asked."""
        require(self.name, inputs=inputs, outputs=outputs)
        if len(inputs) != len(outputs):
            raise ValueError(f"induction shows (input, output) pairs: {len(inputs)} inputs, {len(outputs)} outputs")
        pairs = "\n".join(f"{fence('input', i)}\n{fence('output', o)}" for i, o in zip(inputs, outputs, strict=True))
        parts = [
            "Write a Python function `f` that maps each input below to its output. It will also be "
            "checked on inputs you do not see, so capture the general rule, not just these cases. "
            + INPUT_FORMAT.replace("An input is", "Each input is"),
            pairs,
        ]
        if message.strip():
            parts.append(f"Hint from the puzzle's author:\n{fence('message', message)}")
        parts += [PROGRAM_RULES, think_then_answer("find the rule that maps every input to its output",
                                                   "the program `f` in a ```python block")]
        return "\n\n".join(parts)

    def solver_answer(self, ref: Ref) -> str:
        return answer("I look for the rule behind the pairs.", ("python", ref.program))

    def read_prediction(self, scan: p.Scan, text: str) -> str | None:
        """The program: a fenced one defining ``f``, else the program unfenced in ``<answer>``."""
        return p.select_program(p.blocks(scan, "python")) or p.bare_answer(text, "python")

    def gold_answer(self, task: TaskView) -> str:
        return task.program

    def answer_check(self, task: TaskView, prediction: str) -> Any:
        from sandbox.tasks import InductionAnswer

        k = task.n_shown
        return InductionAnswer(program=prediction, inputs=task.inputs[k:], outputs=task.outputs[k:])

    # ------------------------------------------------------------------------- seeding

    def seed_task(self, n_inputs: int, shown: int) -> dict[str, Any]:
        """The identity program with N literal inputs and a message; outputs are the inputs' values."""
        inputs = SEED_INPUTS[:n_inputs]
        while len(inputs) < n_inputs:  # more than we list: distinct integers
            inputs.append(str(len(inputs) * 11))
        return {"program": IDENTITY_PROGRAM, "inputs": inputs, "outputs": [identity_output(x) for x in inputs],
                "message": SEED_MESSAGE, "n_shown": shown}
