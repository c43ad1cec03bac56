"""Code suites with hidden tests: EvalPlus's HumanEval+ and MBPP+, and LiveCodeBench's code
generation, each read from the benchmark's published JSONL and checked by a harness script that
runs *in the sandbox* with the answer.

EvalPlus (``HumanEvalPlus-v0.1.10.jsonl.gz``, ``MbppPlus-v0.2.0.jsonl.gz``): rows with ``task_id``,
``prompt``, ``entry_point``, ``canonical_solution`` (MBPP+: also ``code``), ``base_input`` and
``plus_input`` (lists of argument lists) and ``atol``. As EvalPlus does, the harness computes the
expected outputs with the canonical solution (in its own namespace, before the answer runs), then
calls the answer on the base inputs and then the plus inputs, each call under its own time limit
(max(:data:`MIN_CALL_S`, 4 × the reference's time)), comparing exactly, or within ``atol`` for
floats, with EvalPlus's special oracles (HumanEval/32's root check, MBPP's set comparisons, ...).
MBPP+'s inputs that JSON cannot hold (tuples, sets, complex numbers) are rebuilt per task as
EvalPlus does. ``correct`` is base and plus; ``base_correct`` the base tests alone.

LiveCodeBench (``livecodebench/code_generation_lite``, ``test.jsonl`` … ``test6.jsonl``): rows with
``question_id``, ``question_title``, ``question_content``, ``starter_code``, ``platform``,
``difficulty``, ``contest_date``, ``public_test_cases`` (JSON text), ``private_test_cases`` (JSON
text, or base64 of zlib of a *pickle* of JSON text) and ``metadata`` (JSON text; ``func_name`` for
functional tests). Tests are stdin/stdout (the answer is a program; output compared line by line,
numbers as decimals) or functional (a ``Solution`` method called on JSON arguments). The private
tests are never decoded here: JSON text is read as JSON; anything else goes into the harness as
the string it is, and only the sandbox decompresses and unpickles it.

The harness scripts themselves (plain text, run only in the sandbox) are in
:mod:`stages.evaluation.harnesses`; they are importable from here too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stages.errors import EvalError
from stages.evaluation.harnesses import EVALPLUS_HARNESS as EVALPLUS_HARNESS
from stages.evaluation.harnesses import LCB_HARNESS as LCB_HARNESS

CANDIDATE = "__AZR_CANDIDATE__"
"""Where a harness takes the answer's code (as a string literal)."""
DATA = "__AZR_DATA__"
MIN_CALL_S = 1.0
LCB_CALL_S = 6.0
"""LiveCodeBench's own time limit per test."""
PASS_MARK = "AZR-TESTS-PASSED"
BASE_MARK = "AZR-BASE-PASSED"


def fill(harness: str, data: Any) -> str:
    return harness.replace(DATA, repr(json.dumps(data)))


# ----------------------------------------------------------------------------- EvalPlus


def evalplus_item_data(row: dict[str, Any], path: Path, line: int, dataset: str) -> dict[str, Any]:
    """The harness data of one EvalPlus row (checked here, run in the sandbox)."""
    missing = [k for k in ("task_id", "prompt", "entry_point", "base_input", "plus_input") if k not in row]
    if missing:
        raise EvalError(f"{path}:{line}: missing field '{missing[0]}'; expected EvalPlus's JSONL layout")
    solution = row.get("canonical_solution") or row.get("code")
    if not isinstance(solution, str):
        raise EvalError(f"{path}:{line}: missing field 'canonical_solution'; expected EvalPlus's JSONL layout")
    if not isinstance(row["base_input"], list) or not isinstance(row["plus_input"], list):
        raise EvalError(f"{path}:{line}: base_input and plus_input must be lists of argument lists")
    reference = row["prompt"] + solution if dataset == "humaneval" else solution
    return {
        "dataset": dataset, "task_id": str(row["task_id"]), "entry_point": row["entry_point"],
        "reference": reference, "base_input": row["base_input"], "plus_input": row["plus_input"],
        "atol": float(row.get("atol") or 0), "min_call_s": MIN_CALL_S,
        "pass_mark": PASS_MARK, "base_mark": BASE_MARK,
    }


def mbpp_plus_task(prompt: str, tests: list[str]) -> str:
    """MBPP+'s prompt is a docstring holding the task and one assert: shown as text and tests."""
    text = prompt.strip().strip('"').strip()
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("assert")]
    asserts = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("assert")] or tests[:1]
    body = "\n".join(lines).strip()
    if asserts:
        body += "\nYour code should pass these tests:\n\n```python\n" + "\n".join(asserts) + "\n```"
    return body


# ----------------------------------------------------------------------------- LiveCodeBench


def lcb_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) of a LiveCodeBench JSONL file or a folder of them (test.jsonl, test2.jsonl, …),
    read a line at a time (the published files are large)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("test*.jsonl"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 1))
        if not files:
            raise EvalError(f"--data {path}: no test*.jsonl files; expected LiveCodeBench's release files")
    elif path.is_file():
        files = [path]
    else:
        raise EvalError(f"--data {path}: no such file; give a local LiveCodeBench JSONL file (or its folder)")
    for f in files:
        with f.open("rb") as fh:
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    raise EvalError(f"{f}:{i}: not valid JSON; expected one LiveCodeBench object per line") from None
                if not isinstance(row, dict):
                    raise EvalError(f"{f}:{i}: expected a JSON object, got {type(row).__name__}")
                yield i, row


def _json_text(value: Any, path: Path, line: int, name: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise EvalError(f"{path}:{line}: field '{name}' is not JSON text") from None


def lcb_item_data(row: dict[str, Any], path: Path, line: int) -> dict[str, Any]:
    """The harness data of one LiveCodeBench row. The private tests stay encoded unless they are
    plain JSON text: nothing here unpickles."""
    for name in ("question_id", "question_content", "public_test_cases"):
        if name not in row:
            raise EvalError(f"{path}:{line}: missing field '{name}'; expected LiveCodeBench's JSONL layout")
    public = _json_text(row["public_test_cases"], path, line, "public_test_cases")
    meta = _json_text(row.get("metadata") or "{}", path, line, "metadata")
    private_raw = row.get("private_test_cases")
    private, blob = None, None
    if isinstance(private_raw, list):
        private = private_raw
    elif isinstance(private_raw, str) and private_raw.strip():
        try:
            private = json.loads(private_raw)
        except ValueError:
            blob = private_raw  # zlib + base64 of a pickle: decoded only in the sandbox
    if not isinstance(public, list):
        raise EvalError(f"{path}:{line}: public_test_cases must be a JSON list of tests")
    func = meta.get("func_name") if isinstance(meta, dict) else None
    if any(isinstance(t, dict) and t.get("testtype") == "functional" for t in public) and not func:
        raise EvalError(f"{path}:{line}: functional tests need metadata.func_name")
    return {"public": public, "private": private, "private_blob": blob, "func_name": func,
            "call_s": LCB_CALL_S, "pass_mark": PASS_MARK}


def lcb_task(row: dict[str, Any]) -> str:
    """LiveCodeBench's question, and what the answer must be (after its official prompt)."""
    parts = ["You will be given a question (problem specification) and will generate a correct Python "
             "program that matches the specification and passes all tests.",
             f"### Question:\n{row['question_content'].strip()}"]
    starter = (row.get("starter_code") or "").strip()
    if starter:
        parts.append("### Format: You will use the following starter code to write the solution to the "
                     f"problem.\n```python\n{starter}\n```")
    else:
        parts.append("### Format: Read the inputs from stdin, solve the problem and write the answer to stdout "
                     "(do not directly test on the sample inputs). When the program runs, it reads the inputs, "
                     "runs the algorithm and writes the output to STDOUT.")
    return "\n\n".join(parts)


LCB_TEMPLATE = "livecodebench/v1"
