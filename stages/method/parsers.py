"""Reading model completions: what the answer holds, and, separately, whether its format is right.

Extraction (:func:`extract_answer`, :func:`extract_blocks`, :func:`select_program`) never judges;
:func:`judge` judges and says why in one line. The task kinds (:mod:`stages.method.kinds`) say
which blocks each role's answer holds, and their ``format_verdict``, ``parse_proposal`` and
``parse_solver`` do both for a stage's record. Everything runs in linear time with ``str.find``
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
from collections.abc import Callable
from dataclasses import dataclass, field

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
class Scan:
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


def _scan(answer: str) -> Scan:
    scan = Scan()
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
    return blocks(scan, kind)


def blocks(scan: Scan, kind: str) -> list[str]:
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
# Format verdict (generic: the task kind says which blocks a role's answer needs)
# ---------------------------------------------------------------------------------------------


def judge(text: str, needs: tuple[str, ...], scan: Scan | None, strict: bool = True, bare_ok: bool = False,
          block_problem: Callable[[str, list[str]], str | None] | None = None) -> str | None:
    """The first format problem of ``text`` (already scanned into ``scan``), or None.

    ``needs``: the block kinds the answer must hold; ``bare_ok``: a solver's answer may be the
    value (or program) itself inside ``<answer>``; ``block_problem(kind, blocks)``: what is wrong
    with the present blocks of one kind (default: an empty program or an empty last block)."""
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
    for kind in needs:
        found = blocks(scan, kind)
        if not found and bare_ok and bare_answer(text, kind) is not None:
            continue  # the value (or program) itself inside <answer> </answer>
        if not found:
            if kind in scan.unclosed or (kind == "python" and "untagged" in scan.unclosed):
                return f"the ```{kind} fence is never closed"
            return f"no ```{kind} block in the answer"
        problem = block_problem(kind, found) if block_problem is not None else empty_block(kind, found)
        if problem is not None:
            return problem
    return None


def empty_block(kind: str, found: list[str]) -> str | None:
    """The default rule on present blocks: a program must be there, the last block non-empty."""
    if kind == "python":
        return None if select_program(found) else "the ```python block is empty"
    return None if found[-1] else f"the last ```{kind} block is empty"


def scan_answer(text: str, strict: bool = True) -> Scan | None:
    """The blocks of the answer region (the last ``<answer>``; without ``strict``, the whole tail
    when there is no tag), or None when there is no answer."""
    answer = extract_answer(text)
    if answer is None and not strict:
        answer = _tail(text)
    return _scan(answer) if answer is not None else None


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
