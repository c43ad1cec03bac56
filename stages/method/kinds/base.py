"""What every task type is: :class:`TaskKind`, the object a stage asks about a type's prompts,
parsing, answer check and seed task, and :class:`ProgramKind`, the kinds whose proposer writes a
program and one input (deduction, abduction).

A kind never names another kind: what it needs from the others (the programs an induction
proposer is shown) is handed to it by the stage, from the registry (:mod:`stages.method.kinds`).
"""

from __future__ import annotations

import ast
import random
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Protocol, TypeVar, get_args

from stages.method import parsers as p
from stages.method.prompts import (
    ANOTHER,
    INPUT_FORMAT,
    PROGRAM_RULES,
    PROPOSER_LAYOUT,
    Ref,
    Turn,
    answer,
    fence,
    show_ref,
    think_then_answer,
)

Role = Literal["proposer", "solver"]
ROLES: tuple[Role, ...] = get_args(Role)

IDENTITY_PROGRAM = "def f(a):\n    return a"
IDENTITY_INPUT = '"Hello world"'
"""The paper's seed triplet: the identity program and its input."""


class TaskView(Protocol):
    """What a kind reads of a task (a :class:`stages.rundir.records.Task`, or an evaluation
    item's stand-in)."""

    program: str
    inputs: list[str]
    outputs: list[str]
    message: str
    n_shown: int


T = TypeVar("T")


def sample_references(pool: Sequence[T], k: int, rng: random.Random) -> list[T]:
    """K references drawn uniformly without replacement (all of them when fewer than K)."""
    if len(pool) <= k:
        return list(pool)
    return rng.sample(list(pool), k)


def identity_output(arg_text: str) -> str:
    """repr of f(*args) for the identity program: the value of the single literal argument."""
    return repr(ast.literal_eval(arg_text))


class TaskKind:
    """A task type. Subclasses set the class attributes and the prompts; the parsing is generic,
    driven by the block kinds each role's answer holds."""

    name: ClassVar[str]
    short: ClassVar[str]
    """Three letters in ids (``000001-ded-003``); unique across the registry."""
    proposer_blocks: ClassVar[tuple[str, ...]]
    """The fenced blocks a proposer's answer must hold."""
    solver_block: ClassVar[str]
    """The fenced block a solver's answer is read from (or the bare value inside ``<answer>``)."""
    solver_demo: ClassVar[Ref]
    """The worked example shown before a task with ``solve.demonstrations``."""
    proposes_program: ClassVar[bool] = True
    """Whether the proposer writes the program (False: it is given one, as for induction)."""

    # ------------------------------------------------------------------------- proposer

    def draw_references(self, own: Sequence[T], programs: Sequence[T], k: int, rng: random.Random,
                        demonstrations: bool) -> tuple[list[T], T | None]:
        """The tasks a proposer prompt shows, and a worked exchange's task (or None). ``own`` is
        this type's buffer, ``programs`` the buffers of the kinds that propose programs."""
        raise NotImplementedError

    def shortens_references(self) -> bool:
        """Whether a prompt over the token limit may show fewer references."""
        return True

    def proposer_prompt(self, references: Sequence[Ref], n_inputs: int = 10, rules: str = "") -> str:
        raise NotImplementedError

    def proposer_turns(self, references: Sequence[Ref], n_inputs: int = 10, rules: str = "",
                       demo: Ref | None = None) -> list[Turn]:
        raise NotImplementedError

    def proposer_answer(self, ref: Ref, n_inputs: int = 10) -> str:
        """A well-formatted proposer answer for the task ``ref`` (a demonstration)."""
        raise NotImplementedError

    def read_proposal(self, scan: p.Scan, n_inputs: int) -> tuple[str | None, list[str], str | None]:
        """(program, inputs, message) of a proposer's answer."""
        raise NotImplementedError

    def proposal_program(self, written: str | None, references: Sequence[Any]) -> str | None:
        """The program a proposal stands on: the one it wrote, or the one it was given."""
        return written

    def block_problem(self, role: str, block: str, blocks: list[str], n_inputs: int) -> str | None:
        """What is wrong with the (present) blocks of one kind, or None: an empty program or an
        empty last block. A kind with its own rule (induction's input count) overrides it."""
        return p.empty_block(block, blocks)

    # ------------------------------------------------------------------------- validation

    def n_shown(self, shown: int) -> int:
        """How many of a new task's (input, output) pairs its solver sees (``propose.shown``)."""
        return 0

    # ------------------------------------------------------------------------- solver

    def shown(self, task: TaskView) -> dict[str, Any]:
        """What the solver is shown of ``task``: keyword arguments of :meth:`solver_prompt`."""
        return {"program": task.program, "inputs": task.inputs, "outputs": task.outputs}

    def solver_prompt(self, *, program: str = "", inputs: Sequence[str] = (), outputs: Sequence[str] = (),
                      message: str = "") -> str:
        raise NotImplementedError

    def solver_answer(self, ref: Ref) -> str:
        """A well-formatted solver answer for the task ``ref`` (a demonstration)."""
        raise NotImplementedError

    def gold_answer(self, task: TaskView) -> str:
        """A known-correct answer's text (what the solver's block would hold)."""
        raise NotImplementedError

    def answer_check(self, task: TaskView, prediction: str) -> Any:
        """The sandbox's description of checking ``prediction`` against ``task``."""
        raise NotImplementedError

    def solver_turns(self, **shown: Any) -> list[Turn]:
        """The solver's prompt as chat turns: the kind's worked example, then the task."""
        d = self.solver_demo
        return [
            ("user", self.solver_prompt(program=d.program, inputs=d.inputs, outputs=d.outputs, message=d.message)),
            ("assistant", self.solver_answer(d)),
            ("user", self.solver_prompt(**shown)),
        ]

    # ------------------------------------------------------------------------- seeding, similarity

    def seed_task(self, n_inputs: int, shown: int) -> dict[str, Any]:
        """The fields of this buffer's seed task (the identity triplet, in the paper)."""
        return {"program": IDENTITY_PROGRAM, "inputs": [IDENTITY_INPUT], "outputs": [identity_output(IDENTITY_INPUT)]}

    # ------------------------------------------------------------------------- parsing (generic)

    def needs(self, role: str) -> tuple[str, ...]:
        return self.proposer_blocks if role == "proposer" else (self.solver_block,)

    def format_verdict(self, text: str, role: str, n_inputs: int = 10, strict: bool = True) -> p.FormatVerdict:
        error = self._judge(text, role, n_inputs, p.scan_answer(text, strict), strict)
        return p.FormatVerdict(ok=error is None, error=error)

    def parse_proposal(self, text: str, n_inputs: int = 10, strict: bool = True) -> p.ParsedProposal:
        scan = p.scan_answer(text, strict)
        error = self._judge(text, "proposer", n_inputs, scan, strict)
        program, inputs, message = self.read_proposal(scan, n_inputs) if scan is not None else (None, [], None)
        return p.ParsedProposal(program, inputs, message, format_ok=error is None, format_error=error)

    def parse_solver(self, text: str, strict: bool = True) -> p.ParsedAnswer:
        scan = p.scan_answer(text, strict)
        error = self._judge(text, "solver", 0, scan, strict)
        prediction = self.read_prediction(scan, text) if scan is not None else None
        return p.ParsedAnswer(prediction, format_ok=error is None, format_error=error)

    def read_prediction(self, scan: p.Scan, text: str) -> str | None:
        """The solver's prediction: the last block of :attr:`solver_block`, else the bare answer."""
        return next(iter(reversed(p.blocks(scan, self.solver_block))), None) or p.bare_answer(text)

    def _judge(self, text: str, role: str, n_inputs: int, scan: p.Scan | None, strict: bool) -> str | None:
        return p.judge(text, self.needs(role), scan, strict, bare_ok=role == "solver",
                       block_problem=lambda block, found: self.block_problem(role, block, found, n_inputs))


class ProgramKind(TaskKind):
    """A kind whose proposer writes a new program and one input, shown K references of its own
    buffer (deduction, abduction). Subclasses give the proposer's goal and the solver's side."""

    proposer_blocks = ("python", "input")
    goal: ClassVar[str]
    """What makes a task of this kind worth proposing, told to the proposer."""

    def draw_references(self, own: Sequence[T], programs: Sequence[T], k: int, rng: random.Random,
                        demonstrations: bool) -> tuple[list[T], T | None]:
        return sample_references(own, k, rng), None

    def proposer_prompt(self, references: Sequence[Ref], n_inputs: int = 10, rules: str = "") -> str:
        parts = ["You write Python puzzles for a code-reasoning test.", self.goal]
        if references:
            parts.append("Here are existing puzzles (program, input, output). Yours must be different from all of them.")
            parts += [show_ref(i, ref) for i, ref in enumerate(references, 1)]
        parts += [
            PROGRAM_RULES + (f"\n{rules.strip()}" if rules.strip() else ""),
            INPUT_FORMAT,
            "Write one new program and one input for it. "
            + think_then_answer("plan the program and work out what it returns on your input",
                                "your program in a ```python block and your input in an ```input block")
            + (" Write the blocks as in the examples above (without the output)." if references
               else " The answer looks like this:\n\n" + PROPOSER_LAYOUT),
        ]
        return "\n\n".join(parts)

    def proposer_turns(self, references: Sequence[Ref], n_inputs: int = 10, rules: str = "",
                       demo: Ref | None = None) -> list[Turn]:
        """The instructions, then each reference as an earlier answer of the assistant."""
        turns: list[Turn] = [("user", self.proposer_prompt([], n_inputs, rules))]
        for ref in references:
            turns += [("assistant", self.proposer_answer(ref)), ("user", ANOTHER)]
        return turns

    def proposer_answer(self, ref: Ref, n_inputs: int = 10) -> str:
        return answer("A short deterministic program and an input for it.",
                      ("python", ref.program), ("input", ref.inputs[0]))

    def read_proposal(self, scan: p.Scan, n_inputs: int) -> tuple[str | None, list[str], str | None]:
        return p.select_program(p.blocks(scan, "python")), p.blocks(scan, "input")[-1:], None


def require(kind: str, **given: object) -> None:
    """A solver prompt's needed fields are all given."""
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ValueError(f"a {kind} solver prompt needs {' and '.join(missing)}")


__all__ = [
    "IDENTITY_INPUT",
    "IDENTITY_PROGRAM",
    "ROLES",
    "ProgramKind",
    "Ref",
    "Role",
    "TaskKind",
    "TaskView",
    "Turn",
    "fence",
    "identity_output",
    "require",
    "sample_references",
]
