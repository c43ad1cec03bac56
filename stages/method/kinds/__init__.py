"""The task kinds, as a registry: a name maps to the :class:`~stages.method.kinds.base.TaskKind`
that owns the type's prompts, parsing, answer check, seed task and similarity key.

Stages, records, config and display ask the kind (``KINDS[task.type]``) and iterate the registry
(``for name in KINDS``, in registration order: deduction, abduction, induction); none compares a
type's name. Adding a type is one module (a ``TaskKind`` subclass) plus one :func:`register` line
below (or a call from a plugin or a test).

The module-level functions keep the text-level interface the tests and the evaluation use:
``parse_solver(text, "deduction")`` is ``KINDS["deduction"].parse_solver(text)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from stages.method.kinds.abduction import Abduction
from stages.method.kinds.base import ROLES, Role, TaskKind
from stages.method.kinds.deduction import Deduction
from stages.method.kinds.induction import Induction
from stages.method.parsers import FormatVerdict, ParsedAnswer, ParsedProposal
from stages.method.prompts import Ref, Turn

KINDS: dict[str, TaskKind] = {}
"""Name -> kind, in registration order (the order of every per-type loop and table)."""


def register(kind: TaskKind) -> TaskKind:
    """Add ``kind`` to the registry; its name and its short id code must be new."""
    if kind.name in KINDS:
        raise ValueError(f"task kind {kind.name!r} is already registered")
    if any(k.short == kind.short for k in KINDS.values()):
        raise ValueError(f"task kind {kind.name!r}: short code {kind.short!r} is taken")
    if len(kind.short) != 3 or "-" in kind.short:
        raise ValueError(f"task kind {kind.name!r}: short code must be 3 characters without '-', got {kind.short!r}")
    KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind (a test's or a plugin's); the three of the paper are meant to stay."""
    KINDS.pop(name, None)


def kind_of(name: str) -> TaskKind:
    """The kind called ``name``; an unknown name is a ValueError that lists the known ones."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown task type {name!r}: expected one of {', '.join(KINDS)}") from None


register(Deduction())
register(Abduction())
register(Induction())


# ------------------------------------------------------------------------- text-level interface


def _role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")


def format_verdict(text: str, role: Role, task_type: str, n_inputs: int = 10, strict: bool = True) -> FormatVerdict:
    """Judge a completion's format for (role, task type); ``n_inputs`` is the induction N."""
    _role(role)
    return kind_of(task_type).format_verdict(text, role, n_inputs, strict)


def parse_proposal(text: str, task_type: str, n_inputs: int = 10, strict: bool = True) -> ParsedProposal:
    """Program, input(s) and message of a proposer completion, with its format verdict."""
    return kind_of(task_type).parse_proposal(text, n_inputs, strict)


def parse_solver(text: str, task_type: str, strict: bool = True) -> ParsedAnswer:
    """The solver's prediction (output literal, input or program, as text), with its format verdict."""
    return kind_of(task_type).parse_solver(text, strict)


def proposer_prompt(task_type: str, references: Sequence[Ref], n_inputs: int = 10, rules: str = "") -> str:
    """The proposer's prompt; ``rules``: what the sandbox's static checks refuse."""
    return kind_of(task_type).proposer_prompt(references, n_inputs, rules)


def proposer_turns(task_type: str, references: Sequence[Ref], n_inputs: int = 10, rules: str = "",
                   demo: Ref | None = None) -> list[Turn]:
    """The proposer's prompt as chat turns (demonstrations)."""
    return kind_of(task_type).proposer_turns(references, n_inputs, rules, demo)


def solver_prompt(task_type: str, *, program: str = "", inputs: Sequence[str] = (), outputs: Sequence[str] = (),
                  message: str = "") -> str:
    """The solver's prompt for a task of ``task_type``."""
    return kind_of(task_type).solver_prompt(program=program, inputs=inputs, outputs=outputs, message=message)


def solver_turns(task_type: str, *, program: str = "", inputs: Sequence[str] = (), outputs: Sequence[str] = (),
                 message: str = "") -> list[Turn]:
    """The solver's prompt as chat turns: the kind's worked example, then the task."""
    return kind_of(task_type).solver_turns(program=program, inputs=inputs, outputs=outputs, message=message)


def demo_answer(task_type: str, role: str, ref: Ref, n_inputs: int = 10) -> str:
    """A well-formatted answer of ``role`` for the task ``ref`` (used as a demonstration)."""
    _role(role)
    kind = kind_of(task_type)
    return kind.proposer_answer(ref, n_inputs) if role == "proposer" else kind.solver_answer(ref)


__all__ = ["KINDS", "ROLES", "Role", "TaskKind", "demo_answer", "format_verdict", "kind_of", "parse_proposal",
           "parse_solver", "proposer_prompt", "proposer_turns", "register", "solver_prompt", "solver_turns",
           "unregister"]
