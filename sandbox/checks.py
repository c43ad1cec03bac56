"""Static checks on model-written text, done on the host without running anything.

Size and nesting are capped on the raw text before it is parsed; everything else is decided on
the parsed AST (never by searching the text): syntax, the depth of the tree, an entry function
`f`, and the banned imports, builtins and attributes (:mod:`sandbox.banned`, which describes
those rules). :func:`describe_rules` puts the rules in words for a proposer prompt.

Inputs are argument lists made of literals only, so an "input" such as `1) or True or (1` is
refused. Parsing is `ast.parse`, which runs nothing.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any, Literal

from sandbox.banned import banned_use
from sandbox.config import SandboxConfig

Reason = Literal["parse", "no_entry", "banned"]
_OPEN, _CLOSE = "([{", ")]}"


@dataclass(frozen=True)
class StaticCheck:
    """Verdict of the static checks: ok, or the reason (parse, no_entry, banned) and a short detail."""

    ok: bool
    reason: Reason | None = None
    detail: str = ""


class InputError(ValueError):
    """An input that is not a plain argument list of Python literals."""


def _text_problem(text: str, max_chars: int, max_nesting: int, what: str) -> str | None:
    """Caps checked on raw text, before any parser sees it."""
    if len(text) > max_chars:
        return f"{what} has {len(text)} chars, over the cap of {max_chars}"
    if "\x00" in text:
        return f"{what} contains a null byte"
    depth = deepest = 0
    for ch in text:  # counts brackets inside strings too: a conservative bound
        if ch in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif ch in _CLOSE:
            depth -= 1
    if deepest > max_nesting:
        return f"{what} nests brackets {deepest} deep, over the cap of {max_nesting}"
    return None


def _parse(text: str, mode: str) -> ast.AST | str:
    try:
        return ast.parse(text, mode=mode)
    except SyntaxError as exc:
        return f"syntax error: {exc.msg} (line {exc.lineno})"
    except (ValueError, MemoryError, RecursionError) as exc:
        return f"cannot parse: {type(exc).__name__}"


def ast_depth(tree: ast.AST) -> int:
    """Depth of a syntax tree, computed without recursion."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _defines_entry(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "f":
            return True
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "f" for t in targets):
            return True
    return False


_SHOWN_FIRST = ["__class__", "__dict__", "__globals__", "__subclasses__", "__code__", "__closure__",
                "__self__", "__builtins__", "__traceback__", "f_back", "f_locals", "gi_frame", "tb_frame"]


def describe_rules(cfg: SandboxConfig, max_items: int = 10) -> str:
    """The static rules in 3 short lines, for a proposer prompt (pure: depends on `cfg` only)."""

    def some(items: list[str]) -> str:
        shown = ", ".join(items[:max_items])
        return shown + (f" and {len(items) - max_items} more" if len(items) > max_items else "")

    attrs = [a for a in _SHOWN_FIRST if a in cfg.banned_attributes]
    attrs += [a for a in cfg.banned_attributes if a not in attrs]
    return "\n".join([
        f"Not allowed: importing {some(cfg.banned_modules)} (at any depth), or any private _module; "
        "nor attributes named like those modules (x.os, x._sys, x.time).",
        f"Not allowed: the builtins {some(cfg.banned_calls)} (your own parameter or variable of that "
        "name is fine); getattr/setattr/delattr only with a literal attribute name; .format only on a "
        "string literal.",
        f"Not allowed: introspection attributes such as {some(attrs)}; defining or calling __init__, "
        "__eq__, __lt__ etc., super().__init__() and reading __name__ are fine.",
    ])


def check_program(source: str, cfg: SandboxConfig, *, need_entry: bool = True) -> StaticCheck:
    """Caps, syntax, entry function `f` (when `need_entry`), banned imports/names/attributes."""
    if problem := _text_problem(source, cfg.max_source_chars, cfg.max_nesting, "program"):
        return StaticCheck(False, "parse", problem)
    tree = _parse(source, "exec")
    if isinstance(tree, str):
        return StaticCheck(False, "parse", tree)
    if (depth := ast_depth(tree)) > cfg.max_ast_depth:
        return StaticCheck(False, "parse", f"syntax tree {depth} deep, over the cap of {cfg.max_ast_depth}")
    if hit := banned_use(tree, cfg, source):
        return StaticCheck(False, "banned", hit)
    if need_entry and not _defines_entry(tree):
        return StaticCheck(False, "no_entry", "no top-level function f")
    return StaticCheck(True)


def parse_input(text: str, cfg: SandboxConfig | None = None) -> tuple[Any, ...]:
    """Parse an argument list such as `1, [2, 3], {'a': 1}` into a tuple of values; literals only.

    Raises InputError when the text is not exactly a positional argument list of literals."""
    cfg = cfg or SandboxConfig()
    if problem := _text_problem(text, cfg.max_input_chars, cfg.max_nesting, "input"):
        raise InputError(problem)
    # Parsed as the argument list of a call, so the text cannot close the call and add code.
    tree = _parse("f(" + text + "\n)", "eval")
    if isinstance(tree, str):
        raise InputError(f"input {tree}")
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "f"
            and call.func.col_offset == 0 and not call.keywords):
        raise InputError("input is not a plain argument list")
    try:
        return tuple(ast.literal_eval(arg) for arg in call.args)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        why = re.sub(r" at 0x[0-9a-f]+", "", str(exc))  # ast's message names an object's address
        raise InputError(f"input is not made of literals: {why[:80]}") from None


def check_input(text: str, cfg: SandboxConfig) -> StaticCheck:
    """parse_input as a verdict."""
    try:
        parse_input(text, cfg)
    except InputError as exc:
        return StaticCheck(False, "parse", str(exc))
    return StaticCheck(True)
