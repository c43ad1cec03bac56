"""`azr eval`: item derivation (pure), the harness self-check through the sandbox (known-correct
answers score 100%, wrong ones 0%), every suite end to end on the tiny model, the loop hook and
--compare, and the one-line errors."""

from __future__ import annotations

import json

import pytest
from conftest import TINY

from sandbox import SandboxConfig
from stages.evaluation import evaluate, scoring, suites

CFG = SandboxConfig(workers=2)

CRUX_ROWS = [
    {"id": "sample_0", "code": "def f(xs):\n    return sorted(xs)[::-1]", "input": "[3, 1, 2]", "output": "[3, 2, 1]"},
    {"id": "sample_1", "code": "def f(s, n):\n    return s * n", "input": "'ab', 3", "output": "'ababab'"},
]
MBPP_ROWS = [
    {"task_id": 2, "text": "Write a function to find the shared elements of two tuples.",
     "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
     "test_list": ["assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))",
                   "assert set(similar_elements((1, 2, 3, 4), (5, 4, 3, 7))) == set((3, 4))"]},
    {"task_id": 3, "text": "Write a function to tell whether a number is not prime.",
     "code": "import math\ndef is_not_prime(n):\n    return n < 2 or any(n % i == 0 for i in range(2, math.isqrt(n) + 1))",
     "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True"],
     "test_setup_code": ""},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def wrong_completion(item: suites.Item) -> str:
    block = {
        "codegen": ("python", f"def {item.entry_point}(*args, **kwargs):\n    return 'azr-wrong'"),
        "deduction": ("output", "'azr-wrong'"),
        "abduction": ("input", "'azr-wrong', 'azr-wrong', 'azr-wrong', 'azr-wrong', 'azr-wrong'"),
    }[item.kind]
    return f"<think> guess </think>\n<answer>\n```{block[0]}\n{block[1]}\n```\n</answer>"


def self_check(items, sb):
    right = scoring.summarize(scoring.score(items, [scoring.reference_completion(i) for i in items], sb, CFG))
    wrong = scoring.summarize(scoring.score(items, [wrong_completion(i) for i in items], sb, CFG))
    return right, wrong


# ----------------------------------------------------------------------------- derivation (pure)


def test_test_inputs_reads_literal_calls_in_order_once():
    test = (
        "def check(candidate):\n"
        "    assert candidate([1, 2], 3) == 4\n"
        "    assert abs(candidate(-1.5, 'a') - 1) < 1e-6\n"
        "    x = 5\n"
        "    assert candidate(x) == 1\n"          # not literal: skipped
        "    assert candidate([1, 2], 3) == 4\n"  # repeated: kept once
        "    assert candidate(k=1) == 1\n"        # keyword: skipped
    )
    assert suites.literal_test_inputs(test) == ["[1, 2], 3", "-1.5, 'a'"]
    assert suites.literal_test_inputs("def broken(:") == []


def test_task_program_renames_entry_and_drops_docstrings():
    src = 'def helper(x):\n    """help"""\n    return x\n\ndef solve(n):\n    """Doc with >>> solve(1)"""\n    # a comment\n    return solve(n - 1) if n else helper(0)\n'
    prog = suites.task_program(src, "solve")
    assert "def f(n):" in prog and "return f(n - 1) if n else helper(0)" in prog
    assert '"""' not in prog and "comment" not in prog and "solve" not in prog
    taken = suites.task_program("def solve(f):\n    return f + 1\n", "solve")
    assert taken.endswith("f = solve\n") and "def solve(f):" in taken


def test_extract_code_prefers_the_block_defining_the_entry_point():
    text = "<think>x</think><answer>\n```python\ndef g(): pass\n```\n```python\ndef add(a):\n    return a\n```\n```python\nprint(1)\n```\n</answer>"
    assert scoring.extract_code(text, "add") == "def add(a):\n    return a"
    assert scoring.extract_code("Sure:\n```python\nreturn 1\n```", "add") == "return 1"  # no <answer> tag
    assert scoring.extract_code("no code at all", "add") is None


def test_a_body_only_answer_is_placed_under_the_prompt(sb):
    item = next(suites.humaneval_suite(suites.Context(sb, CFG, None)))  # has_close_elements
    body = ("for i, a in enumerate(numbers):\n    for j, b in enumerate(numbers):\n"
            "        if i != j and abs(a - b) < threshold:\n            return True\nreturn False")
    result = scoring.score([item], [f"<answer>\n```python\n{body}\n```\n</answer>"], sb, CFG)[0]
    assert result["correct"] and not result["format_ok"]  # counted in score, not in score_strict


# ----------------------------------------------------------------------------- harness self-check


def test_humaneval_canonical_solutions_all_pass_and_a_wrong_one_scores_zero(sb):
    items = suites.load_items("humaneval", sb, CFG)
    assert len(items) == 164
    right, wrong = self_check(items, sb)
    assert right["score"] == 1.0 and right["score_strict"] == 1.0
    assert wrong["score"] == 0.0


def test_humaneval_io_items_are_derived_in_the_sandbox_and_check_right(sb):
    items = suites.load_items("humaneval-io", sb, CFG)
    # 4 problems give none: 32, 38 and 50 test on random inputs, 160's solution calls eval.
    assert len(items) == 2 * 160
    assert {i.kind for i in items} == {"deduction", "abduction"}
    first = items[0]
    assert first.item_id == "HumanEval/0/deduction" and "def f(" in first.program
    assert first.input == "[1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3" and first.output == "True"
    right, wrong = self_check(items, sb)
    assert right["score"] == 1.0 and wrong["score"] == 0.0


def test_limit_derives_only_what_it_needs(sb):
    items = suites.load_items("humaneval-io", sb, CFG, limit=5)
    assert [i.item_id for i in items][:2] == ["HumanEval/0/deduction", "HumanEval/0/abduction"]
    assert len(items) == 5


@pytest.mark.parametrize(("suite", "rows"), [("cruxeval", CRUX_ROWS), ("mbpp", MBPP_ROWS)])
def test_data_file_suites_check_right(suite, rows, sb, tmp_path):
    data = write_jsonl(tmp_path / f"{suite}.jsonl", rows)
    items = suites.load_items(suite, sb, CFG, data=data)
    assert len(items) == (2 * len(rows) if suite == "cruxeval" else len(rows))
    if suite == "mbpp":
        assert [i.entry_point for i in items] == ["similar_elements", "is_not_prime"]
    right, wrong = self_check(items, sb)
    assert right["score"] == 1.0 and wrong["score"] == 0.0


def test_gzipped_humaneval_style_data_is_read(sb, tmp_path):
    import gzip

    rows = suites.humaneval_problems(None)[:2]
    path = tmp_path / "he.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    assert [i.item_id for i in suites.load_items("humaneval", sb, CFG, data=path)] == ["HumanEval/0", "HumanEval/1"]


# ----------------------------------------------------------------------------- CLI, end to end


@pytest.fixture
def run_dir(azr, tmp_path, tiny_model):
    path = tmp_path / "R"
    assert azr("seed", "--run", path, "--config", TINY, "--set", "eval.suites=[humaneval]",
               "--set", "eval.limit=2", "--set", "eval.every=2").code == 0
    return path


@pytest.mark.parametrize("suite", ["humaneval", "humaneval-io", "cruxeval", "mbpp"])
def test_each_suite_runs_end_to_end_and_writes_its_json(suite, azr, run_dir, tmp_path):
    rows = {"cruxeval": CRUX_ROWS, "mbpp": MBPP_ROWS}.get(suite)
    data = ["--data", write_jsonl(tmp_path / "d.jsonl", rows)] if rows else []
    r = azr("eval", "--run", run_dir, "--base", "--suite", suite, "--limit", "2", *data, "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["suite"] == suite and summary["items"] == 2 and 0.0 <= summary["score"] <= 1.0
    saved = json.loads((run_dir / "eval" / f"{suite}-base.json").read_text())
    assert len(saved["results"]) == 2 and saved["seconds"] > 0 and saved["iteration"] is None
    assert {"item_id", "correct", "prediction", "completion", "status"} <= set(saved["results"][0])
    assert not list((run_dir / "eval").glob(".*"))  # written atomically: no temp file left


def test_missing_data_file_is_one_line_exit_1(azr, run_dir):
    r = azr("eval", "--run", run_dir, "--base", "--suite", "cruxeval", "--data", run_dir / "nope.jsonl")
    assert r.code == 1 and "no such file" in r.err and len(r.err.strip().splitlines()) == 1
    r = azr("eval", "--run", run_dir, "--base", "--suite", "mbpp")
    assert r.code == 1 and "--data FILE" in r.err


def test_malformed_data_names_the_line(azr, run_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(CRUX_ROWS[0]) + "\n{not json\n")
    r = azr("eval", "--run", run_dir, "--base", "--suite", "cruxeval", "--data", bad)
    assert r.code == 1 and f"{bad}:2: not valid JSON" in r.err
    bad.write_text(json.dumps({"code": "def f(x): return x", "input": "1"}) + "\n")
    r = azr("eval", "--run", run_dir, "--base", "--suite", "cruxeval", "--data", bad)
    assert r.code == 1 and "missing field 'output'" in r.err


def test_usage_errors_are_one_line(azr, run_dir):
    assert "--base, or one --iter N" in azr("eval", "--run", run_dir, "--suite", "humaneval").err
    r = azr("eval", "--run", run_dir, "--iter", "3", "--suite", "humaneval")
    assert r.code == 1 and "no checkpoint" in r.err
    r = azr("eval", "--run", run_dir, "--base", "--suite", "humaneval-oi")
    assert r.code == 1 and "unknown suite 'humaneval-oi'" in r.err
    r = azr("eval", "--run", run_dir, "--compare")
    assert r.code == 1 and "no evaluations" in r.err


def test_loop_hook_then_compare(azr, run_dir):
    from stages.rundir.manifest import open_run
    from stages.session import Session

    run, _ = open_run(run_dir)
    policy = evaluate.policy_of(run, None)
    assert evaluate.maybe_evaluate(run, 1, policy) == []  # eval.every = 2
    [summary] = evaluate.maybe_evaluate(run, 2, policy)
    assert summary["suite"] == "humaneval" and summary["items"] == 2 and "results" not in summary
    with Session(run) as session:  # the loop's session: its in-memory policy after update 4 is used
        session.policy, session.policy_iter = policy, 5
        assert [s["iteration"] for s in evaluate.maybe_evaluate(run, 4, session)] == [4]
    assert azr("eval", "--run", run_dir, "--base", "--suite", "humaneval", "--limit", "2").code == 0

    r = azr("eval", "--run", run_dir, "--compare", "--json")
    assert r.code == 0
    table = json.loads(r.out)
    assert table["columns"] == ["base", 2, 4]
    assert set(table["suites"]["humaneval"]) == {"base", "2", "4"}
    r = azr("eval", "--run", run_dir, "--compare", "--iter", "4")
    assert r.code == 0 and "iter 4" in r.out and "iter 2" not in r.out and "humaneval" in r.out


def test_codegen_reads_a_program_written_unfenced_in_the_answer():
    """The solver may answer induction with the program itself in <answer> (no fence): code
    generation is read the same way, for the problem's own entry point."""
    from stages.evaluation.scoring import extract_code

    text = "<think> plan </think>\n<answer>\ndef add(a, b):\n    return a + b\n</answer>"
    assert extract_code(text, "add") == "def add(a, b):\n    return a + b"
    assert extract_code("<answer>\nadd = 1\n</answer>", "add") is None  # no definition: no program
    fenced = "<answer>\n```python\ndef add(a, b):\n    return a - b\n```\n</answer>"
    assert extract_code(fenced, "add") == "def add(a, b):\n    return a - b"
