"""Banned uses in a program's syntax tree: imports, builtins, attributes and module reaches.

Decided on the parsed AST (never by searching the text): banned imports at any depth (and private
`_modules`), banned builtins where the name really is the builtin (the stdlib `symtable` says,
scope by scope, whether a name is a parameter, a local or free variable; a top-level definition
counts when nothing of the program can run before it), and banned attributes, including
attributes named like a banned module (`contextlib.os`, `collections._sys`), since through them a
program reaches that module without importing it. getattr/setattr/delattr and
operator.attrgetter/methodcaller must get a literal name, which the attribute rules then check;
string annotations are checked as the code they are.

Attribute names hidden elsewhere are attribute names too: the keyword attributes of a class
pattern (`case object(os=o)`), the strings of a class's `__match_args__` (a literal tuple), and
the fields of a format string (`'{0.__traceback__}'.format(e)`), which is why `.format` and
`.format_map` are allowed on a string literal only. Where the scope analysis cannot tell two
scopes apart (two lambdas or comprehensions on one line), neither gets a symbol table, and every
name in them is taken for a global: stricter, never looser. The stdlib doors that evaluate
annotation strings (`functools.singledispatch`) and the legacy modules that wrap raw file
descriptors (`asyncore`) are banned by name (see `config.py`). :mod:`sandbox.checks` runs this
after the size, nesting and syntax checks.
"""

from __future__ import annotations

import ast
import symtable
from typing import Any

from sandbox.config import SandboxConfig


def _banned_module(name: str, banned: set[str]) -> str | None:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        if ".".join(parts[:i]) in banned:
            return ".".join(parts[:i])
    private = next((p for p in parts if p.startswith("_") and p != "__future__"), None)
    return name if private else None


# Attribute names under which stdlib modules hold a banned module, besides `name` and `_name`
# (found by walking every allowed stdlib module's attributes: `re.enum.bltns` is `builtins`).
_MODULE_ALIASES = {"bltns": "builtins", "_bootstrap": "importlib", "_bootstrap_external": "importlib",
                   "_imp": "importlib", "_frozen_importlib": "importlib", "_frozen_importlib_external": "importlib"}
# Calls that take an attribute name as a string: the name must be a literal that passes the
# attribute rules (index of the name argument; attrgetter takes dotted names, every one checked).
_NAME_TAKING_BUILTINS = {"getattr": 1, "setattr": 1, "delattr": 1}
_NAME_TAKING_CALLS = {"attrgetter": None, "methodcaller": 0}
_SCOPE_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
                ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_COMP_NAMES = {ast.ListComp: "listcomp", ast.SetComp: "setcomp", ast.DictComp: "dictcomp", ast.GeneratorExp: "genexpr"}


_FORMATTING = {"format", "format_map"}


def _format_problem(text: str, rules: _Rules, depth: int = 0) -> str | None:
    """The first field of a format string that names a banned attribute (or item), or None."""
    import _string

    try:
        fields = list(_string.formatter_parser(text))
        for _, field, spec, _ in fields:
            if field is None:
                continue
            _, rest = _string.formatter_field_name_split(field)
            for _is_attr, key in rest:
                if isinstance(key, str) and (problem := rules.attribute_problem(key)):
                    return f"field {field!r} {problem}"
            if spec and "{" in spec:
                if depth > 2:
                    return "format specs nested too deep"
                if problem := _format_problem(spec, rules, depth + 1):
                    return problem
    except ValueError as exc:
        return f"malformed ({exc})"
    return None


class _Banned(Exception):
    """The first banned use found; its message is the StaticCheck detail."""


class _Rules:
    """The ban lists of one config, as sets (see checks.describe_rules for the rules in words)."""

    def __init__(self, cfg: SandboxConfig) -> None:
        self.modules = set(cfg.banned_modules)
        self.builtins = set(cfg.banned_calls)
        self.attributes = set(cfg.banned_attributes)
        self.module_attrs: dict[str, str] = dict(_MODULE_ALIASES)
        for name in cfg.banned_modules:
            for part in {name.split(".")[0], name.split(".")[-1]}:
                self.module_attrs.setdefault(part, name)
                self.module_attrs.setdefault("_" + part.lstrip("_"), name)

    def attribute_problem(self, name: str) -> str | None:
        if name in self.attributes:
            return f"uses banned attribute {name}"
        if name in self.module_attrs:
            return f"reaches banned module {self.module_attrs[name]} through attribute {name}"
        return None


def _is_inert(stmt: ast.stmt) -> bool:
    """A top-level statement that runs none of the program's code when executed (no call, no
    decorator, no class bases, nothing but literals and names on the right of an assignment)."""
    if isinstance(stmt, ast.Import | ast.ImportFrom | ast.Pass):
        return True
    if isinstance(stmt, ast.Expr):
        return isinstance(stmt.value, ast.Constant)
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
        a = stmt.args
        evaluated = [*a.defaults, *(d for d in a.kw_defaults if d is not None)]
        evaluated += [x.annotation for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg)
                      if x is not None and x.annotation is not None]
        if stmt.returns is not None:
            evaluated.append(stmt.returns)
        return not stmt.decorator_list and all(_is_pure(e) for e in evaluated)
    if isinstance(stmt, ast.ClassDef):
        return not (stmt.decorator_list or stmt.bases or stmt.keywords) and all(_is_inert(b) for b in stmt.body)
    if isinstance(stmt, ast.Assign):
        return all(isinstance(t, ast.Name) for t in stmt.targets) and _is_pure(stmt.value)
    if isinstance(stmt, ast.AnnAssign):
        return isinstance(stmt.target, ast.Name) and _is_pure(stmt.annotation) and (stmt.value is None or _is_pure(stmt.value))
    return False


def _is_pure(expr: ast.expr) -> bool:
    return all(isinstance(n, ast.Constant | ast.Name | ast.Load | ast.Tuple | ast.List | ast.Set | ast.Dict
                          | ast.UnaryOp | ast.USub | ast.UAdd) for n in ast.walk(expr))


def _top_level_bindings(tree: ast.Module) -> dict[str, int]:
    """Names a top-level statement binds for good before any of the program's code can run: the
    first statements up to the binding are all inert, and the name is never deleted anywhere.
    Maps the name to the index of its binding statement."""
    deleted = {t.id for n in ast.walk(tree) if isinstance(n, ast.Delete) for t in n.targets if isinstance(t, ast.Name)}
    deleted |= {n.name for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler) and n.name}
    bound: dict[str, int] = {}
    for k, stmt in enumerate(tree.body):
        if not _is_inert(stmt):
            break
        names: list[str] = []
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [stmt.name]
        elif isinstance(stmt, ast.Assign):
            names = [t.id for t in stmt.targets if isinstance(t, ast.Name)]
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None and isinstance(stmt.target, ast.Name):
            names = [stmt.target.id]
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            names = [(a.asname or a.name).split(".")[0] for a in stmt.names]
        for name in names:
            if name not in deleted:
                bound.setdefault(name, k)
    return bound


class _Checker:
    """Walks the tree scope by scope (symtable tells what each name refers to in its scope)."""

    def __init__(self, tree: ast.Module, table: symtable.SymbolTable | None, rules: _Rules) -> None:
        self.tree, self.rules = tree, rules
        self.bound = _top_level_bindings(tree)
        self.stmt_index = 0
        self.in_function = 0
        self.callees: set[int] = set()  # ids of Name/Attribute nodes that are a call's func
        self.children: dict[int, list[Any]] = {}
        self.run(tree, table)

    # --- scopes ------------------------------------------------------------------------------
    def _child(self, table: symtable.SymbolTable | None, name: str, lineno: int) -> symtable.SymbolTable | None:
        """The symbol table of the scope `name` opened at `lineno` inside `table` (children are
        taken in source order, each once); None when there is no such table."""
        if table is None:
            return None
        key = id(table)
        if key not in self.children:
            self.children[key] = [table, list(table.get_children())]  # keeps `table` alive: ids stay unique
        remaining = self.children[key][1]
        found = [k for k, child in enumerate(remaining) if child.get_name() == name and child.get_lineno() == lineno]
        if len(found) != 1:
            # None, or two scopes of that name on one line (lambdas, comprehensions): symtable's
            # order and this walk's need not agree, so neither gets a table, and every name in
            # them is taken for a global (the conservative side)
            return None
        return remaining.pop(found[0])

    def run(self, tree: ast.Module, table: symtable.SymbolTable | None) -> None:
        for k, stmt in enumerate(tree.body):
            self.stmt_index = k
            self.visit(stmt, table)

    def visit_all(self, nodes: list[Any], table: symtable.SymbolTable | None) -> None:
        for node in nodes:
            if node is not None:
                self.visit(node, table)

    def visit(self, node: ast.AST, table: symtable.SymbolTable | None) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            a = node.args
            self.visit_all([*a.defaults, *a.kw_defaults], table)
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
            self.visit_all([p.annotation for p in params if p is not None], table)
            name = "lambda" if isinstance(node, ast.Lambda) else node.name
            if not isinstance(node, ast.Lambda):
                self.visit_all([*node.decorator_list, node.returns], table)
                self._string_annotations([p.annotation for p in params if p is not None] + [node.returns])
            child = self._child(table, name, node.lineno)
            self.in_function += 1
            self.visit_all(node.body if isinstance(node.body, list) else [node.body], child)
            self.in_function -= 1
            return
        if isinstance(node, ast.ClassDef):
            self.visit_all([*node.decorator_list, *node.bases, *node.keywords], table)
            child = self._child(table, node.name, node.lineno)
            self.visit_all(node.body, child)
            return
        if isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            first, *rest = node.generators
            self.visit(first.iter, table)
            child = self._child(table, _COMP_NAMES[type(node)], node.lineno)
            self.in_function += 1
            self.visit_all([first.target, *first.ifs, *rest], child)
            self.visit_all([node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt], child)
            self.in_function -= 1
            return
        if isinstance(node, ast.AnnAssign):
            self._string_annotations([node.annotation])
        self.check(node, table)
        for child in ast.iter_child_nodes(node):
            self.visit(child, table)

    def _string_annotations(self, annotations: list[ast.expr | None]) -> None:
        """A string annotation is code (typing.get_type_hints evaluates it): check it as code."""
        for ann in annotations:
            for n in ast.walk(ann) if ann is not None else ():
                if isinstance(n, ast.Constant) and isinstance(n.value, str) and len(n.value) < 2000:
                    try:
                        expr = ast.parse(n.value.strip(), mode="eval")
                    except (SyntaxError, ValueError, MemoryError, RecursionError):
                        continue
                    for sub in ast.walk(expr):
                        self.check(sub, None)

    # --- what a name refers to ---------------------------------------------------------------
    def _is_own(self, name: str, table: symtable.SymbolTable | None) -> bool:
        """Whether `name` here is bound by the program (so not the builtin of that name)."""
        if table is not None:
            try:
                sym = table.lookup(name)
            except KeyError:
                sym = None
            if sym is not None:
                kind = table.get_type()
                if kind == "function" and (sym.is_local() or sym.is_parameter() or sym.is_free()):
                    return True  # a local never falls back to the builtins: unbound is an error
                if kind == "class" and sym.is_free():
                    return True
        if name not in self.bound:
            return False
        # A global the program binds at top level: its own once that statement has run, which is
        # before any function body can run (the statements before it run no code).
        return self.in_function > 0 or self.stmt_index > self.bound[name]

    # --- the rules ---------------------------------------------------------------------------
    def check(self, node: ast.AST, table: symtable.SymbolTable | None) -> None:
        rules = self.rules
        if isinstance(node, ast.Import):
            for alias in node.names:
                if hit := _banned_module(alias.name, rules.modules):
                    raise _Banned(f"imports banned module {hit}")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise _Banned("relative import")
            base = node.module or ""
            if hit := _banned_module(base, rules.modules):
                raise _Banned(f"imports banned module {hit}")
            for alias in node.names:
                if hit := _banned_module(f"{base}.{alias.name}", rules.modules):
                    raise _Banned(f"imports banned module {hit}")
                if problem := rules.attribute_problem(alias.name):
                    raise _Banned(f"imports {alias.name} from {base}: {problem}")
        elif isinstance(node, ast.Call):
            self._check_call(node, table)
        elif isinstance(node, ast.Name):
            if not isinstance(node.ctx, ast.Load):
                return  # binding a name makes it the program's own (deletes: see _top_level_bindings)
            if node.id in rules.builtins and not self._is_own(node.id, table):
                if node.id in _NAME_TAKING_BUILTINS and id(node) in self.callees:
                    return  # the call itself was checked (literal attribute name)
                raise _Banned(f"uses the builtin {node.id}")
            if node.id in _NAME_TAKING_CALLS and id(node) not in self.callees:
                raise _Banned(f"uses {node.id} other than by calling it with a literal name")
        elif isinstance(node, ast.Attribute):
            if problem := rules.attribute_problem(node.attr):
                raise _Banned(problem)
            if node.attr in _NAME_TAKING_CALLS and id(node) not in self.callees:
                raise _Banned(f"uses {node.attr} other than by calling it with a literal name")
            if node.attr in _FORMATTING:
                self._format_string(node)
        elif isinstance(node, ast.MatchClass):
            for name in node.kwd_attrs:  # `case C(name=p)` reads attribute `name` of the subject
                if problem := rules.attribute_problem(name):
                    raise _Banned(f"class pattern: {problem}")
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__match_args__" for t in targets):
                self._match_args(node.value)

    def _format_string(self, node: ast.Attribute) -> None:
        """`.format`/`.format_map` walk the attributes and items named in the string's fields: only
        on a literal string, whose every field name passes the attribute rules."""
        if not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            raise _Banned(f"calls .{node.attr} on something other than a string literal")
        if problem := _format_problem(node.value.value, self.rules):
            raise _Banned(f"format string: {problem}")

    def _match_args(self, value: ast.expr | None) -> None:
        """`__match_args__` names the attributes a positional class pattern reads: a literal tuple
        of names that pass the attribute rules."""
        if not (isinstance(value, ast.Tuple) and all(isinstance(e, ast.Constant) and isinstance(e.value, str)
                                                    for e in value.elts)):
            raise _Banned("__match_args__ must be a literal tuple of attribute names")
        for e in value.elts:
            if problem := self.rules.attribute_problem(e.value):
                raise _Banned(f"__match_args__: {problem}")

    def _check_call(self, node: ast.Call, table: symtable.SymbolTable | None) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in _NAME_TAKING_BUILTINS and not self._is_own(func.id, table):
            self._literal_names(func.id, node, _NAME_TAKING_BUILTINS[func.id])
            self.callees.add(id(func))
            return
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name in _NAME_TAKING_CALLS:
            self._literal_names(name, node, _NAME_TAKING_CALLS[name])
            self.callees.add(id(func))

    def _literal_names(self, what: str, node: ast.Call, index: int | None) -> None:
        args = node.args if index is None else node.args[index:index + 1]
        if (node.keywords and what != "methodcaller") or any(isinstance(a, ast.Starred) for a in node.args) or not args:
            raise _Banned(f"calls {what} without a literal attribute name")
        for arg in args:
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise _Banned(f"calls {what} with a non-literal attribute name")
            for part in arg.value.split(".") if what == "attrgetter" else [arg.value]:
                if problem := self.rules.attribute_problem(part):
                    raise _Banned(f"{what}({arg.value!r}) {problem}")


def banned_use(tree: ast.AST, cfg: SandboxConfig, source: str | None = None) -> str | None:
    """The first banned import, builtin, attribute or module reach in the tree, described; None
    when clean. `source` is the text the tree was parsed from (the scope analysis reads it); when
    it is not given the tree is unparsed for it."""
    if not isinstance(tree, ast.Module):
        tree = ast.Module(body=[ast.Expr(value=tree)] if isinstance(tree, ast.expr) else [tree], type_ignores=[])
    if source is None:
        source = ast.unparse(tree)
        tree = ast.parse(source)
    try:
        table: symtable.SymbolTable | None = symtable.symtable(source, "<program>", "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        table = None  # every name is then taken for a global: stricter, never looser
    try:
        _Checker(tree, table, _Rules(cfg))
    except _Banned as exc:
        return str(exc)
    return None
