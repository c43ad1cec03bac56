"""The pieces every task kind's prompts are made of, written from the paper's method (arXiv
2505.03335): the reference layout, the program rules, the reasoning-then-answer request, the
fenced blocks and the demonstration turns. Each kind's own text is in its module
(:mod:`stages.method.kinds`).

Prompts are plain text; wrapping them in a chat template (or not) is the model service's job.
Every prompt asks for reasoning then an answer, ``<think> … </think> <answer> … </answer>``, and
ends with the exact answer layout that :mod:`stages.method.parsers` reads: fenced ```python,
```input, ```output and ```message blocks inside the answer.

Prompts are kept short because the small models this runs on have ~2k-token contexts. An *input*
is always the argument list exactly as written inside ``f(...)`` (``"Hello world"``,
``[1, 2], 3``), which is also how the sandbox calls the program.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ref:
    """A task shown to the proposer: a program with its input(s), output(s) and message."""

    program: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    message: str = ""


Turn = tuple[str, str]
"""(role, content): role is ``user`` or ``assistant``."""

INPUT_FORMAT = (
    "An input is the argument list exactly as written inside `f(...)`, "
    'for example `"Hello world"` or `[1, 2], 3`.'
)

PROGRAM_RULES = """\
Rules for the program:
- the entry function is named `f`; helper functions or classes may be defined before `f`;
- it is deterministic: no randomness, time, files, network, printing or user input, and no imports
  of os, sys, subprocess or similar modules;
- it returns a value that can be written as a Python literal (numbers, strings, lists, tuples,
  dicts, sets, booleans, None)."""

PROPOSER_LAYOUT = """\
<answer>
```python
<your program>
```
```input
<your input>
```
</answer>"""
# Angle-bracket placeholders: a copied placeholder fails validation instead of passing for a task.

ANOTHER = "Good. Now write another puzzle, different from all of the above, in exactly the same layout."
"""The last user turn of a proposer prompt with demonstrations."""


def think_then_answer(reasoning: str, answer: str) -> str:
    """The paper's layout, asked for in words: a layout shown with a placeholder inside
    ``<think>`` (say ``<think> trace the code </think>``) is copied verbatim by small instruct
    models (Qwen2.5-Coder-0.5B did, then guessed), while spelled-out steps let them reason."""
    return (f"First think step by step: write <think>, {reasoning}, then </think>. "
            f"Then write <answer>, {answer}, then </answer>.")


def fence(kind: str, body: str) -> str:
    return f"```{kind}\n{body.strip()}\n```"


def show_ref(number: int, ref: Ref) -> str:
    parts = [f"Example {number}:", fence("python", ref.program)]
    for inp, out in zip(ref.inputs, ref.outputs, strict=False):
        parts += [fence("input", inp), fence("output", out)]
    if ref.message:
        parts.append(fence("message", ref.message))
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Demonstration turns (config propose.demonstrations / solve.demonstrations)
# ---------------------------------------------------------------------------------------------
# Small models copy a demonstrated format far better than a described one: SmolLM2-135M wrote
# fenced programs but almost never an ```input block when the references were listed in the
# prompt. With demonstrations, each reference becomes an earlier answer of the assistant, written
# exactly in the asked-for layout, and the last user turn asks for a new one.


def answer(think: str, *blocks: tuple[str, str]) -> str:
    """A well-formatted answer: the reasoning, then the blocks inside ``<answer>``."""
    body = "\n".join(fence(kind, text) for kind, text in blocks)
    return f"<think> {think} </think>\n<answer>\n{body}\n</answer>"


def show_turns(turns: Sequence[Turn]) -> str:
    """Readable text of a multi-turn prompt, for records and `azr inspect`."""
    if len(turns) == 1:
        return turns[0][1]
    return "\n\n".join(f"[{role}]\n{text}" for role, text in turns)
