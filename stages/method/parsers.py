"""Reading model completions: what the answer holds, and, separately, whether its format is right.

Extraction (:func:`extract_answer`, :func:`extract_blocks`, :func:`select_program`) never judges;
:func:`format_verdict` judges and says why in one line. :func:`parse_proposal` and
:func:`parse_solver` do both for a stage's record. Everything runs in linear time with ``str.find``
/ ``str.rfind`` and one pass over lines (the one regex, ``def f(`` at a line start, cannot
backtrack), and only the last :data:`MAX_COMPLETION_CHARS` characters of a completion are ever
looked at, so a 10 MB runaway generation costs the same as a normal one.

Choices (written down because the model's output is free text):

- **Answer**: the content of the *last* ``<answer>`` tag. A stray ``</answer>`` with no
  ``<answer>`` before it is no answer. An *unclosed* final ``<answer>`` (no ``</answer>`` after
  it) is accepted, and runs to the end of the text: generation stops at the stop string
  ``</answer>``, which a backend may or may not keep in the text. A cut-off generation is still
  caught, because every answer must hold a *closed* fenced block and a cut usually leaves one open.
- **Think**: the format needs ``<think>`` followed by ``</think>``, both before the chosen
  ``<answer>``. Text before ``<think>`` or after ``</answer>`` is ignored. (A caller that prefills
  ``<think>`` in the prompt should pass ``"<think>" + completion``.)
- **Fences**: a block opens on a line whose first non-blank characters are three or more
  backticks followed by a language tag, and closes on a line of at least as many backticks and
  nothing else (CommonMark), so backticks inside code (``s = "```"``) neither open nor close a
  block. An opening fence never closed is not a block (the verdict names it); a line opening a
  new block of a known kind (say ```input) inside an open block ends it as never closed, since a
  model that forgets a closing fence writes exactly that (a departure from CommonMark). Tags are read
  case-insensitively from their first word: ``python``, ``py``, ``python3`` are ``python``. An
  untagged block counts as ``python`` only when the answer has no tagged python block (programs
  are often written under a bare fence); it never counts as input, output or message, since
  which of those it meant is a guess. Block text is dedented and stripped of surrounding
  whitespace, and otherwise kept exact.
- **Bare solver answers**: a deduction or abduction answer may be the value itself inside
  ``<answer> </answer>`` with no fence (the paper's layout, and what instruct models write when
  asked for it); a fenced ```output / ```input block is read first when there is one. An
  induction answer may likewise be the program itself, unfenced, when it defines ``f``.
- **Several blocks of one kind**: the program is the last python block that defines ``f`` at top
  level, else the last python block; a single input (deduction/abduction proposal, abduction
  answer), the output and the message are the last block of their kind; induction inputs are all
  input blocks in order, empty ones dropped, deduplicated by text. An empty required block is a
  format error (an empty argument list is not an input worth a task).
- **Induction count**: a proposal needs at least ``n_inputs`` distinct inputs; the first
  ``n_inputs`` are kept and extra ones dropped (giving more is harmless; too few leaves nothing
  to hide from the solver). Inputs equal in value but not in text (``[1,2]`` / ``[1, 2]``) are
  left to validation.
- **Strictness** (``strict=False``, config ``reward.format: blocks``): the tags become optional.
  When the text has no ``<answer>`` tag the whole completion is the answer region, and
  ``<think>`` is not required; the fenced blocks are still required and read exactly as above.
  Small models (SmolLM2-135M: 0 of 36 sampled proposals carried the tags) otherwise never
  produce a single task to learn from; the paper's format is the default.
- **Size**: a completion longer than :data:`MAX_COMPLETION_CHARS` is a format error (fields are
  still extracted from its tail).
"""

from __future__ import annotations

import ast
import io
import re
import textwrap
import tokenize
from dataclasses import dataclass, field

from stages.method.tasks import ROLES, Role, TaskType, check_type

MAX_COMPLETION_CHARS = 64 * 1024
"""Characters of a completion looked at (its tail); a longer completion is a format error."""

_BLOCK_KINDS = ("python", "input", "output", "message")
_TAG_ALIASES = {"py": "python", "python3": "python", "py3": "python"}

_OPEN_ANSWER, _CLOSE_ANSWER = "<answer>", "</answer>"
_OPEN_THINK, _CLOSE_THINK = "<think>", "</think>"

# Anchored at a line start with no nested repetition: linear on any text.
_DEFINES_F = re.compile(r"^(?:async[ \t]+)?def[ \t]+f[ \t]*\(", re.MULTILINE)


@dataclass(frozen=True)
class FormatVerdict:
    """Whether a completion has the asked-for format; ``error`` says what is wrong when not."""

    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class ParsedProposal:
    """What a proposer's completion holds (extracted even when the format is wrong)."""

    program: str | None
    inputs: list[str] = field(default_factory=list)
    message: str | None = None
    format_ok: bool = False
    format_error: str | None = None


@dataclass(frozen=True)
class ParsedAnswer:
    """What a solver's completion holds: the output literal, the input or the program text."""

    prediction: str | None
    format_ok: bool = False
    format_error: str | None = None


# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------


def _tail(text: str) -> str:
    return text[-MAX_COMPLETION_CHARS:] if len(text) > MAX_COMPLETION_CHARS else text


def _answer_span(text: str) -> tuple[int, int] | None:
    """(start of the ``<answer>`` tag, end of its content) of the last answer in ``text``."""
    close = text.rfind(_CLOSE_ANSWER)
    open_ = text.rfind(_OPEN_ANSWER)
    if open_ == -1:
        return None
    if open_ > close:  # unclosed final answer: runs to the end
        return open_, len(text)
    return open_, close


def extract_answer(text: str) -> str | None:
    """The stripped content of the last ``<answer>`` (see the module docstring), or None."""
    text = _tail(text)
    span = _answer_span(text)
    if span is None:
        return None
    return text[span[0] + len(_OPEN_ANSWER) : span[1]].strip()


def bare_answer(text: str, kind: str = "output", entry: str = "f") -> str | None:
    """The content of the last ``<answer>`` when it holds no fence at all (the paper's solver
    layout: ``<answer>[5, 4]</answer>``), else None; for ``python``, only when it defines ``entry``
    at a line start (a program written without its fence). Only an explicit answer tag counts:
    without one, prose would pass for a value."""
    answer = extract_answer(text)
    if not answer or "```" in answer:
        return None
    if kind == "python" and not re.search(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(entry)}[ \t]*\(", answer, re.M):
        return None
    return answer


@dataclass
class _Scan:
    blocks: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in _BLOCK_KINDS})
    untagged: list[str] = field(default_factory=list)
    unclosed: set[str] = field(default_factory=set)  # tags of fences opened and never closed


def _fence_run(line: str) -> tuple[int, str] | None:
    """(backtick count, rest of line) when ``line`` starts with a fence, else None."""
    s = line.lstrip()
    if not s.startswith("```"):
        return None
    n = len(s) - len(s.lstrip("`"))
    return n, s[n:].strip()


def _kind(info: str) -> str | None:
    """The block kind of a fence's info string: a known kind, '' for untagged, None for other."""
    if not info:
        return ""
    tag = info.split(maxsplit=1)[0].lower()
    tag = _TAG_ALIASES.get(tag, tag)
    return tag if tag in _BLOCK_KINDS else None


def _scan(answer: str) -> _Scan:
    scan = _Scan()
    lines = _tail(answer).split("\n")
    i = 0
    while i < len(lines):
        fence = _fence_run(lines[i])
        i += 1
        if fence is None or "`" in fence[1]:  # a backtick in the info string: inline code, not a fence
            continue
        width, info = fence
        kind = _kind(info)
        body: list[str] = []
        closed = False
        while i < len(lines):
            inner = _fence_run(lines[i])
            if inner is not None and inner[0] >= width and not inner[1]:
                closed = True
                i += 1
                break
            if inner is not None and _kind(inner[1]):  # a new tagged block: this one was left open
                break
            body.append(lines[i])
            i += 1
        if not closed:
            scan.unclosed.add("untagged" if kind == "" else (kind or info.split(maxsplit=1)[0]))
            continue
        text = textwrap.dedent("\n".join(body)).strip()
        if kind == "":
            scan.untagged.append(text)
        elif kind is not None:
            scan.blocks[kind].append(text)
    return scan


def extract_blocks(answer: str, kind: str) -> list[str]:
    """The fenced blocks of ``kind`` (python, input, output, message) in ``answer``, in order.

    Untagged blocks are returned for ``python`` when there is no tagged python block.
    """
    if kind not in _BLOCK_KINDS:
        raise ValueError(f"unknown block kind {kind!r}: expected one of {', '.join(_BLOCK_KINDS)}")
    scan = _scan(answer)
    return _blocks(scan, kind)


def _blocks(scan: _Scan, kind: str) -> list[str]:
    if kind == "python" and not scan.blocks["python"]:
        return list(scan.untagged)
    return list(scan.blocks[kind])


def defines_f(program: str) -> bool:
    """Whether ``program`` has a top-level ``def f(`` line (a cheap text check, not a parse)."""
    return _DEFINES_F.search(program) is not None


def select_program(python_blocks: list[str]) -> str | None:
    """The last block that defines ``f`` at top level, else the last block, else None."""
    for block in reversed(python_blocks):
        if defines_f(block):
            return block
    return python_blocks[-1] if python_blocks else None


def distinct_inputs(input_blocks: list[str]) -> list[str]:
    """Non-empty input blocks in order, each text kept once."""
    seen: set[str] = set()
    out = []
    for block in input_blocks:
        if block and block not in seen:
            seen.add(block)
            out.append(block)
    return out


# ---------------------------------------------------------------------------------------------
# Format verdict and parsing
# ---------------------------------------------------------------------------------------------


def _needs(role: str, task_type: str) -> tuple[str, ...]:
    """The block kinds an answer of (role, type) must hold."""
    if role == "proposer":
        return ("input", "message") if task_type == "induction" else ("python", "input")
    return {"deduction": ("output",), "abduction": ("input",), "induction": ("python",)}[task_type]


def _check(role: str, task_type: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    check_type(task_type)


def _judge(
    text: str, role: str, task_type: str, n_inputs: int, scan: _Scan | None, strict: bool = True
) -> str | None:
    """The first format problem of ``text`` (already judged to hold ``scan``), or None."""
    if len(text) > MAX_COMPLETION_CHARS:
        return f"completion is {len(text):,} characters, over the {MAX_COMPLETION_CHARS:,} cap"
    span = _answer_span(text)
    if span is None and strict:
        return "no <answer> tag"
    if strict and span is not None:
        think_open = text.find(_OPEN_THINK, 0, span[0])
        think_close = text.rfind(_CLOSE_THINK, 0, span[0])
        if think_open == -1 or think_close < think_open:
            return "missing <think> … </think> before <answer>"
    region = text[span[0] + len(_OPEN_ANSWER) : span[1]] if span is not None else _tail(text)
    if scan is None or not region.strip():
        return "the answer is empty"
    for kind in _needs(role, task_type):
        blocks = _blocks(scan, kind)
        if not blocks and role == "solver" and bare_answer(text, kind) is not None:
            continue  # the value (or program) itself inside <answer> </answer>
        if not blocks:
            if kind in scan.unclosed or (kind == "python" and "untagged" in scan.unclosed):
                return f"the ```{kind} fence is never closed"
            return f"no ```{kind} block in the answer"
        if kind == "input" and role == "proposer" and task_type == "induction":
            got = len(distinct_inputs(blocks))
            if got < n_inputs:
                return f"{got} distinct non-empty ```input blocks, {n_inputs} needed"
        elif kind == "python" and not select_program(blocks):
            return "the ```python block is empty"
        elif kind != "python" and not blocks[-1]:
            return f"the last ```{kind} block is empty"
    return None


def _scan_answer(text: str, strict: bool = True) -> _Scan | None:
    answer = extract_answer(text)
    if answer is None and not strict:
        answer = _tail(text)
    return _scan(answer) if answer is not None else None


def format_verdict(
    text: str, role: Role, task_type: TaskType, n_inputs: int = 10, strict: bool = True
) -> FormatVerdict:
    """Judge a completion's format for (role, task type); ``n_inputs`` is the induction N."""
    _check(role, task_type)
    error = _judge(text, role, task_type, n_inputs, _scan_answer(text, strict), strict)
    return FormatVerdict(ok=error is None, error=error)


def parse_proposal(
    text: str, task_type: TaskType, n_inputs: int = 10, strict: bool = True
) -> ParsedProposal:
    """Program, input(s) and message of a proposer completion, with its format verdict.

    deduction/abduction: ``inputs`` holds the last input block (if any). induction: the first
    ``n_inputs`` distinct input blocks; ``program`` is None (the program was given).
    """
    _check("proposer", task_type)
    scan = _scan_answer(text, strict)
    error = _judge(text, "proposer", task_type, n_inputs, scan, strict)
    program = message = None
    inputs: list[str] = []
    if scan is not None:
        if task_type == "induction":
            inputs = distinct_inputs(_blocks(scan, "input"))[:n_inputs]
            message = next(iter(reversed(_blocks(scan, "message"))), None)
        else:
            program = select_program(_blocks(scan, "python"))
            inputs = _blocks(scan, "input")[-1:]
    return ParsedProposal(program, inputs, message, format_ok=error is None, format_error=error)


def parse_solver(text: str, task_type: TaskType, strict: bool = True) -> ParsedAnswer:
    """The solver's prediction: the output literal (deduction), the input (abduction) or the
    program (induction), as text, with its format verdict."""
    _check("solver", task_type)
    scan = _scan_answer(text, strict)
    error = _judge(text, "solver", task_type, 0, scan, strict)
    prediction = None
    if scan is not None:
        if task_type == "induction":
            prediction = select_program(_blocks(scan, "python")) or bare_answer(text, "python")
        else:
            kind = "output" if task_type == "deduction" else "input"
            prediction = next(iter(reversed(_blocks(scan, kind))), None) or bare_answer(text)
    return ParsedAnswer(prediction, format_ok=error is None, format_error=error)


# ---------------------------------------------------------------------------------------------
# Seed programs
# ---------------------------------------------------------------------------------------------


def strip_comments(program: str) -> str:
    """``program`` without its comments; code, strings and docstrings are kept exactly.

    A line holding only a comment is dropped; a trailing comment is cut with the blanks before
    it. When the program does not tokenize, it is returned unchanged.
    """
    lines = io.StringIO(program).readlines()  # the same line split tokenize uses
    cuts: dict[int, int] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(program).readline):
            if tok.type == tokenize.COMMENT:
                cuts[tok.start[0] - 1] = tok.start[1]
    except (tokenize.TokenError, SyntaxError):
        return program
    if not cuts:
        return program
    out = []
    for row, line in enumerate(lines):
        col = cuts.get(row)
        if col is None:
            out.append(line)
            continue
        code = line[:col].rstrip()
        if code:
            newline = line[len(line.rstrip("\r\n")) :]
            out.append(code + newline)
    return "".join(out)


_KEPT_AT_TOP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def strip_globals(program: str) -> str:
    """``program`` with only its imports, functions and classes at the top level: global
    variables, prints, ``if __name__`` blocks and other top-level statements are cut (the lines
    they span), the rest of the text kept exactly. A program that does not parse is returned as is;
    one whose functions needed a removed global then fails validation, like any broken program."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return program
    cut = set()
    for node in tree.body:
        if not isinstance(node, _KEPT_AT_TOP):
            cut.update(range(node.lineno - 1, (node.end_lineno or node.lineno)))
    if not cut:
        return program
    lines = io.StringIO(program).readlines()
    return "".join(line for i, line in enumerate(lines) if i not in cut).strip("\n")
