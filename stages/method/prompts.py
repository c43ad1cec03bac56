"""The user-message text of the six (task type, role) prompts, written from the paper's method
(arXiv 2505.03335, the proposer and solver of each task type).

Each function returns plain text; wrapping it in a chat template (or not) is the model service's
job. Every prompt asks for reasoning then an answer, ``<think> … </think> <answer> … </answer>``,
and ends with the exact answer layout that :mod:`stages.parsers` reads: fenced ```python,
```input, ```output and ```message blocks inside the answer.

Prompts are kept short because the small models this runs on have ~2k-token contexts. An *input*
is always the argument list exactly as written inside ``f(...)`` (``"Hello world"``,
``[1, 2], 3``), which is also how the sandbox calls the program.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from stages.method.tasks import TaskType, check_type


@dataclass(frozen=True)
class Ref:
    """A task shown to the proposer: a program with its input(s), output(s) and message."""

    program: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    message: str = ""


# ---------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------

_INPUT_FORMAT = (
    "An input is the argument list exactly as written inside `f(...)`, "
    'for example `"Hello world"` or `[1, 2], 3`.'
)

_PROGRAM_RULES = """\
Rules for the program:
- the entry function is named `f`; helper functions or classes may be defined before `f`;
- it is deterministic: no randomness, time, files, network, printing or user input, and no imports
  of os, sys, subprocess or similar modules;
- it returns a value that can be written as a Python literal (numbers, strings, lists, tuples,
  dicts, sets, booleans, None)."""

def _think_then_answer(reasoning: str, answer: str) -> str:
    """The paper's layout, asked for in words: a layout shown with a placeholder inside
    ``<think>`` (say ``<think> trace the code </think>``) is copied verbatim by small instruct
    models (Qwen2.5-Coder-0.5B did, then guessed), while spelled-out steps let them reason."""
    return (f"First think step by step: write <think>, {reasoning}, then </think>. "
            f"Then write <answer>, {answer}, then </answer>.")


def _fence(kind: str, body: str) -> str:
    return f"```{kind}\n{body.strip()}\n```"


def _show_ref(number: int, ref: Ref) -> str:
    parts = [f"Example {number}:", _fence("python", ref.program)]
    for inp, out in zip(ref.inputs, ref.outputs, strict=False):
        parts += [_fence("input", inp), _fence("output", out)]
    if ref.message:
        parts.append(_fence("message", ref.message))
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Proposer
# ---------------------------------------------------------------------------------------------

# What makes a task worth proposing, per type: the solver's side of the task decides it.
_PROPOSER_GOAL = {
    "deduction": (
        "The solver will see your program and your input and must predict the output. Make the "
        "output non-trivial to work out: it should take careful step-by-step tracing of the code "
        "(loops, branches, string or list manipulation), while the program stays short and fast."
    ),
    "abduction": (
        "The solver will see your program and its output for your input and must find an input "
        "that produces that output. Make the program hard to invert: recovering a suitable input "
        "from the output alone should take real reasoning (not the identity, not a constant), "
        "while the program stays short and fast."
    ),
}

_PROPOSER_LAYOUT = """\
<answer>
```python
<your program>
```
```input
<your input>
```
</answer>"""
# Angle-bracket placeholders: a copied placeholder fails validation instead of passing for a task.


def proposer_prompt(task_type: TaskType, references: Sequence[Ref], n_inputs: int = 10, rules: str = "") -> str:
    """The proposer's prompt for ``task_type``.

    deduction/abduction: ``references`` are the K reference triplets from that type's buffer; the
    proposer must write a new, different program and one input. induction: ``references`` holds
    exactly one program (from the deduction ∪ abduction buffers); the proposer must give
    ``n_inputs`` inputs and a message. ``rules``: what the sandbox's static checks refuse
    (``sandbox.describe_rules``), told to the proposer so that no rule is hidden.
    """
    check_type(task_type)
    if task_type == "induction":
        if len(references) != 1:
            raise ValueError(f"an induction proposal shows exactly one program, got {len(references)}")
        if n_inputs < 1:
            raise ValueError(f"n_inputs must be at least 1, got {n_inputs}")
        return _induction_proposer_prompt(references[0].program, n_inputs)

    parts = [
        "You write Python puzzles for a code-reasoning test.",
        _PROPOSER_GOAL[task_type],
    ]
    if references:
        parts.append(
            "Here are existing puzzles (program, input, output). Yours must be different from all of them."
        )
        parts += [_show_ref(i, ref) for i, ref in enumerate(references, 1)]
    parts += [
        _PROGRAM_RULES + (f"\n{rules.strip()}" if rules.strip() else ""),
        _INPUT_FORMAT,
        "Write one new program and one input for it. "
        + _think_then_answer("plan the program and work out what it returns on your input",
                             "your program in a ```python block and your input in an ```input block")
        + (" Write the blocks as in the examples above (without the output)." if references
           else " The answer looks like this:\n\n" + _PROPOSER_LAYOUT),
    ]
    return "\n\n".join(parts)


def _induction_proposer_prompt(program: str, n_inputs: int) -> str:
    return "\n\n".join(
        [
            "You write Python puzzles for a code-reasoning test.",
            "The solver will see some of your inputs with this program's outputs for them, plus "
            "your message, and must write the program; it is then checked on the inputs it did "
            "not see. Choose inputs that together reveal what the function does: varied, "
            "covering its different cases.",
            _fence("python", program),
            _INPUT_FORMAT,
            f"Give {n_inputs} different inputs for `f` and a message: one or two sentences hinting at "
            "what `f` does, without giving the code. "
            + _think_then_answer("work out what f does and which inputs show its cases",
                                 f"{n_inputs} ```input blocks, each holding one input, then a ```message "
                                 "block holding your hint") + " The answer looks like this:",
            "\n".join(["<answer>", *(_fence("input", f"<input {i}>") for i in range(1, n_inputs + 1)),
                       _fence("message", "<your hint>"), "</answer>"]),
        ]
    )


# ---------------------------------------------------------------------------------------------
# Solver
# ---------------------------------------------------------------------------------------------


def solver_prompt(
    task_type: TaskType,
    *,
    program: str = "",
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    message: str = "",
) -> str:
    """The solver's prompt for a task of ``task_type``.

    deduction: ``program`` and ``inputs[0]`` are shown, the output is asked. abduction:
    ``program`` and ``outputs[0]`` are shown, an input is asked. induction: the shown
    ``inputs``/``outputs`` pairs and ``message`` are shown, the program is asked.
    """
    check_type(task_type)
    if task_type == "deduction":
        _require(task_type, program=program, input=inputs)
        return _deduction_solver_prompt(program, inputs[0])
    if task_type == "abduction":
        _require(task_type, program=program, output=outputs)
        return _abduction_solver_prompt(program, outputs[0])
    _require(task_type, inputs=inputs, outputs=outputs)
    if len(inputs) != len(outputs):
        raise ValueError(
            f"induction shows (input, output) pairs: {len(inputs)} inputs, {len(outputs)} outputs"
        )
    return _induction_solver_prompt(inputs, outputs, message)


def _require(task_type: str, **given: object) -> None:
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ValueError(f"a {task_type} solver prompt needs {' and '.join(missing)}")


def _deduction_solver_prompt(program: str, input_: str) -> str:
    return "\n\n".join(
        [
            "Predict what this Python program returns when `f` is called with the input below "
            "as its argument list.",
            _fence("python", program),
            _fence("input", input_),
            _think_then_answer("trace the code on this input line by line",
                               "the returned value as a Python literal, as `repr` prints it (strings in "
                               "quotes)"),
        ]
    )


def _abduction_solver_prompt(program: str, output: str) -> str:
    return "\n\n".join(
        [
            "Find an input for which this Python program returns the output below. "
            "Any input that produces it counts.",
            _fence("python", program),
            _fence("output", output),
            _INPUT_FORMAT,
            _think_then_answer("reason backwards from the output and check your input by tracing the "
                               "code", "the input as Python literals (strings in quotes)"),
        ]
    )


def _induction_solver_prompt(inputs: Sequence[str], outputs: Sequence[str], message: str) -> str:
    pairs = "\n".join(
        f"{_fence('input', inp)}\n{_fence('output', out)}" for inp, out in zip(inputs, outputs, strict=True)
    )
    parts = [
        "Write a Python function `f` that maps each input below to its output. It will also be "
        "checked on inputs you do not see, so capture the general rule, not just these cases. "
        + _INPUT_FORMAT.replace("An input is", "Each input is"),
        pairs,
    ]
    if message.strip():
        parts.append(f"Hint from the puzzle's author:\n{_fence('message', message)}")
    parts += [
        _PROGRAM_RULES,
        _think_then_answer("find the rule that maps every input to its output",
                           "the program `f` in a ```python block"),
    ]
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Demonstration turns (config propose.demonstrations / solve.demonstrations)
# ---------------------------------------------------------------------------------------------
# Small models copy a demonstrated format far better than a described one: SmolLM2-135M wrote
# fenced programs but almost never an ```input block when the references were listed in the
# prompt. With demonstrations, each reference becomes an earlier answer of the assistant, written
# exactly in the asked-for layout, and the last user turn asks for a new one.

Turn = tuple[str, str]
"""(role, content): role is ``user`` or ``assistant``."""

_ANOTHER = "Good. Now write another puzzle, different from all of the above, in exactly the same layout."


def _answer(think: str, *blocks: tuple[str, str]) -> str:
    body = "\n".join(_fence(kind, text) for kind, text in blocks)
    return f"<think> {think} </think>\n<answer>\n{body}\n</answer>"


def demo_answer(task_type: TaskType, role: str, ref: Ref, n_inputs: int = 10) -> str:
    """A well-formatted answer of ``role`` for the task ``ref`` (used as a demonstration)."""
    check_type(task_type)
    if role == "proposer":
        if task_type == "induction":
            inputs = [("input", x) for x in ref.inputs[:n_inputs]]
            return _answer("Inputs that show the different cases of f.", *inputs, ("message", ref.message))
        return _answer("A short deterministic program and an input for it.",
                       ("python", ref.program), ("input", ref.inputs[0]))
    if task_type == "deduction":
        return _answer("I trace the code on the input.", ("output", ref.outputs[0]))
    if task_type == "abduction":
        return _answer("I look for an input that gives this output.", ("input", ref.inputs[0]))
    return _answer("I look for the rule behind the pairs.", ("python", ref.program))


def proposer_turns(task_type: TaskType, references: Sequence[Ref], n_inputs: int = 10, rules: str = "",
                   demo: Ref | None = None) -> list[Turn]:
    """The proposer's prompt as chat turns. deduction/abduction: the instructions, then each
    reference as an earlier answer. induction: ``references[0]`` is the program to give inputs
    for; ``demo`` (an induction task from the buffer) is shown first as a worked exchange."""
    check_type(task_type)
    if task_type == "induction":
        final = proposer_prompt(task_type, references, n_inputs)
        if demo is None or len(demo.inputs) < n_inputs or not demo.message:
            return [("user", final)]
        return [("user", proposer_prompt(task_type, [demo], n_inputs)),
                ("assistant", demo_answer(task_type, "proposer", demo, n_inputs)), ("user", final)]
    turns: list[Turn] = [("user", proposer_prompt(task_type, [], n_inputs, rules))]
    for ref in references:
        turns += [("assistant", demo_answer(task_type, "proposer", ref)), ("user", _ANOTHER)]
    return turns


# One fixed worked example per type, shown before the real task when solve.demonstrations is on.
_SOLVER_DEMO = {
    "deduction": Ref(program="def f(a, b):\n    return [x * b for x in a]", inputs=["[1, 2], 3"], outputs=["[3, 6]"]),
    "abduction": Ref(program="def f(s):\n    return s.upper() + '!'", inputs=["'hi'"], outputs=["'HI!'"]),
    "induction": Ref(program="def f(n):\n    return n * n + 1", inputs=["2", "5"], outputs=["5", "26"],
                     message="It squares the number and adds one."),
}


def solver_turns(task_type: TaskType, *, program: str = "", inputs: Sequence[str] = (),
                 outputs: Sequence[str] = (), message: str = "") -> list[Turn]:
    """The solver's prompt as chat turns: one fixed worked example of the type, then the task."""
    d = _SOLVER_DEMO[task_type]
    return [
        ("user", solver_prompt(task_type, program=d.program, inputs=d.inputs, outputs=d.outputs, message=d.message)),
        ("assistant", demo_answer(task_type, "solver", d)),
        ("user", solver_prompt(task_type, program=program, inputs=inputs, outputs=outputs, message=message)),
    ]


def show_turns(turns: Sequence[Turn]) -> str:
    """Readable text of a multi-turn prompt, for records and `azr inspect`."""
    if len(turns) == 1:
        return turns[0][1]
    return "\n\n".join(f"[{role}]\n{text}" for role, text in turns)
