"""The six prompts show what their role needs and ask for the answer layout the parsers read."""

import pytest

from stages.method.kinds import parse_proposal, parse_solver, proposer_prompt, solver_prompt
from stages.method.prompts import Ref

IDENTITY = Ref(program="def f(a):\n    return a", inputs=['"Hello world"'], outputs=['"Hello world"'])
SORTER = Ref(program="def f(xs):\n    return sorted(xs)[::-1]", inputs=["[3, 1, 2]"], outputs=["[3, 2, 1]"])


def _asks_think_then_answer(prompt: str) -> None:
    assert "<think>" in prompt and "</think>" in prompt
    assert "<answer>" in prompt and "</answer>" in prompt
    assert prompt.index("<think>") < prompt.index("<answer>") < prompt.index("</answer>")


@pytest.mark.parametrize("task_type", ["deduction", "abduction"])
def test_proposer_shows_every_reference_and_asks_for_program_and_input(task_type):
    prompt = proposer_prompt(task_type, [IDENTITY, SORTER])
    for ref in (IDENTITY, SORTER):
        assert ref.program in prompt
        assert ref.inputs[0] in prompt and ref.outputs[0] in prompt
    assert "different" in prompt
    assert "```python" in prompt and "```input" in prompt
    assert "`f`" in prompt and "deterministic" in prompt
    assert "[1, 2], 3" in prompt  # the input format is spelled out
    _asks_think_then_answer(prompt)


def test_proposer_says_what_makes_each_type_interesting():
    assert "hard to invert" in proposer_prompt("abduction", [IDENTITY])
    assert "tracing" in proposer_prompt("deduction", [IDENTITY])


def test_induction_proposer_shows_the_program_and_asks_for_n_inputs_and_a_message():
    prompt = proposer_prompt("induction", [SORTER], n_inputs=7)
    assert SORTER.program in prompt
    assert "Give 7 different inputs" in prompt
    assert "```message" in prompt and "```input" in prompt
    assert "without giving the code" in prompt
    assert SORTER.outputs[0] not in prompt  # the proposer chooses inputs; outputs come from the sandbox
    _asks_think_then_answer(prompt)


def test_induction_proposer_needs_exactly_one_program():
    with pytest.raises(ValueError, match="exactly one program"):
        proposer_prompt("induction", [IDENTITY, SORTER])


def test_unknown_task_type_is_refused():
    with pytest.raises(ValueError, match="unknown task type"):
        proposer_prompt("translation", [IDENTITY])


def test_deduction_solver_sees_program_and_input_and_asks_for_the_value_in_the_answer():
    prompt = solver_prompt("deduction", program=SORTER.program, inputs=SORTER.inputs)
    assert SORTER.program in prompt and "[3, 1, 2]" in prompt
    assert "[3, 2, 1]" not in prompt  # the gold output stays hidden
    assert "<answer>, the returned value as a Python literal" in prompt
    _asks_think_then_answer(prompt)


def test_abduction_solver_sees_program_and_output_and_asks_for_the_input_in_the_answer():
    prompt = solver_prompt("abduction", program=SORTER.program, outputs=SORTER.outputs)
    assert SORTER.program in prompt and "[3, 2, 1]" in prompt
    assert "[3, 1, 2]" not in prompt
    assert "<answer>, the input as Python literals" in prompt and "[1, 2], 3" in prompt
    _asks_think_then_answer(prompt)


def test_induction_solver_sees_pairs_and_message_but_not_the_program():
    prompt = solver_prompt(
        "induction",
        inputs=["[3, 1, 2]", "[5, 4]"],
        outputs=["[3, 2, 1]", "[5, 4]"],
        message="sorts descending",
    )
    for text in ("[3, 1, 2]", "[5, 4]", "[3, 2, 1]", "sorts descending"):
        assert text in prompt
    assert "sorted" not in prompt
    assert "```python" in prompt and "`f`" in prompt
    _asks_think_then_answer(prompt)


def test_solver_prompt_names_what_is_missing():
    with pytest.raises(ValueError, match="needs input"):
        solver_prompt("deduction", program="def f(a):\n    return a")
    with pytest.raises(ValueError, match="2 inputs, 1 outputs"):
        solver_prompt("induction", inputs=["1", "2"], outputs=["1"])


def test_prompt_layouts_are_what_the_parsers_accept():
    """The layout each prompt asks for, filled in, parses with a good format; its placeholders,
    copied as they are, do not."""
    proposal = (
        "<think> reverse </think>\n<answer>\n```python\ndef f(s):\n    return s[::-1]\n```\n"
        '```input\n"abc"\n```\n</answer>'
    )
    shown = proposer_prompt("deduction", [])
    assert "<answer>\n```python\n<your program>\n```\n```input\n<your input>\n```\n</answer>" in shown
    assert parse_proposal(proposal, "deduction").format_ok
    assert parse_proposal("<think> x </think>\n" + shown[shown.index("<answer>"):], "deduction").program == "<your program>"
    prompt = solver_prompt("deduction", program="def f(s): ...", inputs=['"abc"'])
    assert "write <think>" in prompt and "then </think>" in prompt and "write <answer>" in prompt
    assert parse_solver("<think> trace </think>\n<answer>'cba'</answer>", "deduction").prediction == "'cba'"
    fenced = "<think> trace </think>\n<answer>\n```output\n'cba'\n```\n</answer>"
    assert parse_solver(fenced, "deduction").prediction == "'cba'"


def test_prompts_stay_short():
    """Small models have ~2k-token contexts: the fixed text of a prompt stays well under that."""
    tiny = Ref(program="def f(a):\n    return a", inputs=["1"], outputs=["1"])
    prompts = [
        proposer_prompt("deduction", [tiny]),
        proposer_prompt("abduction", [tiny]),
        proposer_prompt("induction", [tiny]),
        solver_prompt("deduction", program=tiny.program, inputs=["1"]),
        solver_prompt("abduction", program=tiny.program, outputs=["1"]),
        solver_prompt("induction", inputs=["1"], outputs=["1"], message="m"),
    ]
    assert max(len(p) for p in prompts) < 2000  # characters, so well under 1k tokens


# --- demonstration turns (propose.demonstrations / solve.demonstrations)


def test_proposer_turns_show_references_as_earlier_answers():
    from stages.method.kinds import parse_proposal, proposer_turns

    refs = [Ref(program="def f(a):\n    return a + 1", inputs=["1"], outputs=["2"]),
            Ref(program="def f(s):\n    return s[::-1]", inputs=["'ab'"], outputs=["'ba'"])]
    turns = proposer_turns("deduction", refs)
    assert [r for r, _ in turns] == ["user", "assistant", "user", "assistant", "user"]
    first = parse_proposal(turns[1][1], "deduction")
    assert first.format_ok and first.program == refs[0].program and first.inputs == ["1"]
    assert "different" in turns[-1][1]


def test_induction_turns_demonstrate_with_a_buffer_task():
    from stages.method.kinds import parse_proposal, proposer_turns

    demo = Ref(program="def f(a):\n    return a", inputs=["1", "2", "3", "4"], outputs=["1", "2", "3", "4"],
               message="same")
    prog = Ref(program="def f(x):\n    return x * 3")
    turns = proposer_turns("induction", [prog], n_inputs=4, demo=demo)
    assert len(turns) == 3 and "x * 3" in turns[-1][1]
    assert parse_proposal(turns[1][1], "induction", n_inputs=4).format_ok
    assert len(proposer_turns("induction", [prog], n_inputs=4)) == 1  # no demo: one turn


def test_solver_turns_work_an_example_then_ask():
    from stages.method.kinds import parse_solver, solver_turns

    for t in ("deduction", "abduction", "induction"):
        kw = ({"inputs": ["1"], "outputs": ["2"], "message": "m"} if t == "induction"
              else {"program": "def f(a):\n    return a", "inputs": ["1"], "outputs": ["1"]})
        turns = solver_turns(t, **kw)
        assert [r for r, _ in turns] == ["user", "assistant", "user"]
        assert parse_solver(turns[1][1], t).format_ok
