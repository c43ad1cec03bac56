"""Parsers: extraction per answer kind, the format verdict and its reasons, and bounded cost."""

import pytest

from stages.method.kinds import format_verdict, parse_proposal, parse_solver
from stages.method.parsers import (
    MAX_COMPLETION_CHARS,
    extract_answer,
    extract_blocks,
    select_program,
    strip_comments,
)

PROGRAM = "def f(s):\n    return s[::-1]"


def completion(answer: str, think: str = "some reasoning") -> str:
    return f"<think> {think} </think>\n<answer>\n{answer}\n</answer>"


def fence(kind: str, body: str) -> str:
    return f"```{kind}\n{body}\n```"


# --- well-formed answers, one per (role, type) ------------------------------------------------


@pytest.mark.parametrize("task_type", ["deduction", "abduction"])
def test_proposal_program_and_input(task_type):
    parsed = parse_proposal(completion(fence("python", PROGRAM) + "\n" + fence("input", '"abc"')), task_type)
    assert parsed.format_ok and parsed.format_error is None
    assert parsed.program == PROGRAM
    assert parsed.inputs == ['"abc"']
    assert parsed.message is None


def test_induction_proposal_inputs_and_message():
    blocks = [fence("input", str(i)) for i in range(4)] + [fence("message", "reverses a string")]
    parsed = parse_proposal(completion("\n".join(blocks)), "induction", n_inputs=4)
    assert parsed.format_ok
    assert parsed.inputs == ["0", "1", "2", "3"]
    assert parsed.message == "reverses a string"
    assert parsed.program is None


def test_induction_inputs_are_deduplicated_and_too_few_is_a_format_error():
    blocks = [fence("input", x) for x in ("1", "2", "1", "", "3")] + [fence("message", "m")]
    parsed = parse_proposal(completion("\n".join(blocks)), "induction", n_inputs=4)
    assert parsed.inputs == ["1", "2", "3"]
    assert not parsed.format_ok
    assert "3 distinct" in parsed.format_error and "4 needed" in parsed.format_error


def test_induction_extra_inputs_are_dropped_after_n():
    blocks = [fence("input", str(i)) for i in range(6)] + [fence("message", "m")]
    parsed = parse_proposal(completion("\n".join(blocks)), "induction", n_inputs=4)
    assert parsed.format_ok and parsed.inputs == ["0", "1", "2", "3"]


def test_induction_proposal_needs_a_message():
    blocks = [fence("input", str(i)) for i in range(2)]
    parsed = parse_proposal(completion("\n".join(blocks)), "induction", n_inputs=2)
    assert not parsed.format_ok and "message" in parsed.format_error


@pytest.mark.parametrize(
    ("task_type", "answer", "prediction"),
    [
        ("deduction", fence("output", "'cba'"), "'cba'"),
        ("abduction", fence("input", "[1, 2], 3"), "[1, 2], 3"),
        ("induction", fence("python", PROGRAM), PROGRAM),
    ],
)
def test_solver_prediction_per_type(task_type, answer, prediction):
    parsed = parse_solver(completion(answer), task_type)
    assert parsed.format_ok and parsed.prediction == prediction


# --- several answers / blocks ---------------------------------------------------------------


def test_last_answer_tag_wins():
    text = completion(fence("output", "1")) + "\n" + "<answer>\n" + fence("output", "2") + "\n</answer>"
    assert parse_solver(text, "deduction").prediction == "2"
    assert extract_answer("<answer>a</answer> <answer>b</answer>") == "b"
    assert extract_answer("<answer> x <answer> y </answer>") == "y"


def test_unclosed_final_answer_is_accepted_when_its_blocks_are_closed():
    text = "<think> t </think> <answer>\n" + fence("output", "42")  # stopped at the stop string
    parsed = parse_solver(text, "deduction")
    assert parsed.format_ok and parsed.prediction == "42"


def test_answer_cut_inside_a_fence_is_a_format_error():
    text = "<think> t </think> <answer>\n```output\n4"
    parsed = parse_solver(text, "deduction")
    assert not parsed.format_ok and "never closed" in parsed.format_error
    assert parsed.prediction is None


def test_program_is_the_last_block_defining_f_not_the_first_fence():
    helper_only = "def g(x):\n    return x + 1"
    answer = "\n".join([fence("python", helper_only), fence("python", PROGRAM), fence("python", "print(1)")])
    assert parse_solver(completion(answer), "induction").prediction == PROGRAM
    assert select_program(["x = 1", "y = 2"]) == "y = 2"  # no block defines f: the last one
    assert select_program([]) is None


def test_helpers_before_f_stay_in_the_program():
    program = "def g(x):\n    return x * 2\n\ndef f(a):\n    return g(a)"
    parsed = parse_proposal(completion(fence("python", program) + "\n" + fence("input", "3")), "deduction")
    assert parsed.program == program


def test_last_input_block_is_the_input():
    answer = "\n".join([fence("python", PROGRAM), fence("input", '"a"'), fence("input", '"b"')])
    assert parse_proposal(completion(answer), "abduction").inputs == ['"b"']
    assert (
        parse_solver(completion(fence("input", "1") + "\n" + fence("input", "2")), "abduction").prediction
        == "2"
    )


def test_py_tag_and_untagged_block_are_python():
    assert extract_blocks(fence("py", PROGRAM), "python") == [PROGRAM]
    assert extract_blocks(fence("Python3", PROGRAM), "python") == [PROGRAM]
    assert extract_blocks(fence("", PROGRAM), "python") == [PROGRAM]
    # a tagged python block wins over an untagged one; untagged is never an input
    answer = fence("", "def f(a):\n    return 1") + "\n" + fence("python", PROGRAM)
    assert extract_blocks(answer, "python") == [PROGRAM]
    assert extract_blocks(fence("", "3"), "input") == []


def test_indented_block_is_dedented_and_otherwise_exact():
    answer = "  ```python\n  def f(a):\n      return a  \n  ```"
    assert extract_blocks(answer, "python") == ["def f(a):\n    return a"]


# --- format errors with reasons -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("just text", "no <answer> tag"),
        ("<think> t </think> </answer>", "no <answer> tag"),
        ("<answer>" + fence("output", "1") + "</answer>", "<think>"),
        ("</think> <think> <answer>" + fence("output", "1") + "</answer>", "<think>"),
        ("<answer>" + fence("output", "1") + "</answer> <think> t </think>", "<think>"),
        ("<think> t </think> <answer>   </answer>", "empty"),
        ("<think> t </think> <answer>" + fence("input", "1") + "</answer>", "no ```output block"),
        ("<think> t </think> <answer>\n```output\n\n```\n</answer>", "empty"),
    ],
)
def test_deduction_format_errors_say_why(text, reason):
    verdict = format_verdict(text, "solver", "deduction")
    assert not verdict.ok
    assert reason in verdict.error
    assert parse_solver(text, "deduction").format_error == verdict.error


@pytest.mark.parametrize(("task_type", "value"), [("deduction", "[5, 4]"), ("abduction", "'hello', 2")])
def test_a_bare_value_in_the_answer_is_the_papers_solver_layout(task_type, value):
    parsed = parse_solver(f"<think> t </think>\n<answer>\n{value}\n</answer>", task_type)
    assert parsed.format_ok and parsed.prediction == value
    # without an <answer> tag, prose is never taken for a value, even when the tags are optional
    assert parse_solver(f"the answer is {value}", task_type, strict=False).prediction is None


def test_proposal_missing_input_block():
    verdict = format_verdict(completion(fence("python", PROGRAM)), "proposer", "deduction")
    assert not verdict.ok and "```input" in verdict.error


def test_unclosed_python_fence_is_named():
    text = completion("```python\ndef f(a):\n    return a\n" + fence("input", "1"))
    verdict = format_verdict(text, "proposer", "abduction")
    assert not verdict.ok and "never closed" in verdict.error


def test_format_verdict_refuses_unknown_role_or_type():
    with pytest.raises(ValueError, match="unknown role"):
        format_verdict("", "critic", "deduction")
    with pytest.raises(ValueError, match="unknown task type"):
        parse_solver("", "translation")


# --- awkward content ------------------------------------------------------------------------


def test_backticks_inside_code_do_not_end_the_block():
    program = 'def f(a):\n    fence = "```"\n    return fence + a'
    answer = fence("python", program) + "\n" + fence("input", '"x"')
    assert parse_proposal(completion(answer), "deduction").program == program


def test_longer_fence_holds_a_three_backtick_line():
    body = 'def f(a):\n    s = """\n```\n"""\n    return s'
    answer = f"````python\n{body}\n````\n" + fence("input", "1")
    parsed = parse_proposal(completion(answer), "deduction")
    assert parsed.format_ok and parsed.program == body


def test_tagged_fence_inside_an_open_block_starts_a_new_block():
    answer = "```python\ndef f(a):\n    return a\n```input\n1\n```"
    assert extract_blocks(answer, "input") == ["1"]
    assert extract_blocks(answer, "python") == []


def test_single_line_backtick_span_is_not_a_fence():
    assert extract_blocks('```input "a"```', "input") == []


def test_unicode_survives():
    program = 'def f(s):\n    return s + "→ é 漢字 🙂"'
    answer = fence("python", program) + "\n" + fence("input", '"héllo"')
    parsed = parse_proposal(completion(answer, think="réflexion ✓"), "deduction")
    assert parsed.format_ok and parsed.program == program and parsed.inputs == ['"héllo"']


def test_tags_inside_think_do_not_confuse_the_last_answer():
    text = (
        "<think> I should write <answer> with an ```output block </think>\n"
        "<answer>\n" + fence("output", "5") + "\n</answer>"
    )
    parsed = parse_solver(text, "deduction")
    assert parsed.format_ok and parsed.prediction == "5"


# --- bounded cost on giant or pathological outputs ------------------------------------------


def test_ten_megabyte_output_is_a_format_error_and_still_parses_its_tail():
    text = "<think>" + "a" * 10_000_000 + "</think><answer>" + fence("output", "1") + "</answer>"
    verdict = format_verdict(text, "solver", "deduction")
    assert not verdict.ok and "cap" in verdict.error
    parsed = parse_solver(text, "deduction")
    assert parsed.prediction == "1" and not parsed.format_ok


@pytest.mark.parametrize(
    "text",
    [
        "<answer>" * 2_000_000,  # many opens, no close
        "<think>" + "`" * 10_000_000,  # one huge backtick run
        "<answer>\n" + "```python\n" * 1_000_000,  # fences that never close
        "<think></think><answer>" + "def f(\t" * 1_000_000 + "</answer>",  # near-misses for `def f(`
        "<think></think><answer>\n```python\n" + "def \t" * 2_000_000 + "\n```\n</answer>",
    ],
)
def test_pathological_outputs_complete_with_a_verdict(text):
    for task_type in ("deduction", "abduction", "induction"):
        assert format_verdict(text, "solver", task_type).ok is False
        assert parse_proposal(text, task_type).format_ok is False


_UNDER_CAP = MAX_COMPLETION_CHARS // 12


@pytest.mark.parametrize(
    "answer",
    [
        "```python\n" * _UNDER_CAP,  # every line opens a block the next one interrupts
        "```\n" * _UNDER_CAP,  # untagged blocks opening and closing
        "```python\n" + "def \t" * _UNDER_CAP + "\n```",  # near-misses for `def f(`
        "```input\n" + "`" * (_UNDER_CAP * 10) + "\n```",  # one long backtick run inside a block
    ],
)
def test_pathological_answers_under_the_cap_are_fully_scanned(answer):
    text = completion(answer)
    assert len(text) <= MAX_COMPLETION_CHARS
    for task_type in ("deduction", "abduction", "induction"):
        assert isinstance(format_verdict(text, "proposer", task_type).ok, bool)
        assert isinstance(parse_solver(text, task_type).format_ok, bool)


def test_text_just_under_the_cap_is_judged_normally():
    answer = fence("output", "1")
    pad = MAX_COMPLETION_CHARS - len(completion(answer, think=""))
    assert format_verdict(completion(answer, think="x" * pad), "solver", "deduction").ok


# --- strip_comments -------------------------------------------------------------------------


def test_strip_comments_keeps_strings_with_hash_and_code_exact():
    program = (
        "# a leading comment\n"
        "def f(s):  # trailing\n"
        '    tag = "#not a comment"  # but this is\n'
        "    # a whole-line comment\n"
        "    return s + tag + '#'\n"
    )
    assert strip_comments(program) == (
        "def f(s):\n" + '    tag = "#not a comment"\n' + "    return s + tag + '#'\n"
    )


def test_strip_comments_keeps_docstrings_and_returns_bad_code_unchanged():
    program = 'def f(a):\n    """Doc # with hash."""\n    return a\n'
    assert strip_comments(program) == program
    broken = "def f(a:\n    return '''unterminated # x"
    assert strip_comments(broken) == broken


# --- strict=False (config reward.format: blocks): tags optional, blocks required


def test_blocks_mode_reads_untagged_blocks():
    text = "Sure!\n```python\ndef f(x):\n    return x + 1\n```\n```input\n3\n```\n"
    strict = parse_proposal(text, "deduction", strict=True)
    lenient = parse_proposal(text, "deduction", strict=False)
    assert not strict.format_ok and strict.format_error == "no <answer> tag"
    assert lenient.format_ok and lenient.program.startswith("def f(x):") and lenient.inputs == ["3"]


def test_blocks_mode_still_needs_the_blocks():
    lenient = parse_solver("the answer is 6", "deduction", strict=False)
    assert not lenient.format_ok and "output" in lenient.format_error


def test_blocks_mode_prefers_the_answer_tag_when_present():
    text = "```output\n1\n```\n<answer>\n```output\n2\n```\n</answer>"
    assert parse_solver(text, "deduction", strict=False).prediction == "2"
