"""Comparing answers by value on the host (deduction), and parsing inputs: no eval, ever."""

from __future__ import annotations

import pytest

from sandbox import InputError, check_deduction, parse_input, same_literal


@pytest.mark.parametrize(("gold", "predicted"), [
    ("'Hello world'", '"Hello world"'),
    ("[1, 2]", " [1,2] "),
    ("{'b': 2, 'a': 1}", "{'a': 1, 'b': 2}"),
    ("{'x', 'y', 'z'}", "{'z', 'y', 'x'}"),
    ("-0.0", "0.0"),
    ("(1+2j)", "(1+2j)"),
    ("set()", "set()"),
])
def test_equal_values_match(gold, predicted):
    assert check_deduction(gold, predicted)


@pytest.mark.parametrize(("gold", "predicted"), [
    ("2.0", "2"),
    ("True", "1"),
    ("[1, 2]", "(1, 2)"),
    ("'1'", "1"),
    ("[1, 2]", "[2, 1]"),
    ("{1: 'a'}", "{1.0: 'a'}"),
])
def test_types_must_match(gold, predicted):
    assert not check_deduction(gold, predicted)


def test_nan_equals_itself_inside_containers():
    assert same_literal("[1e999 - 1e999]", "[1e999 - 1e999]") is False  # arithmetic is not a literal
    from sandbox import same_value
    nan = float("nan")
    assert same_value([nan, 1.0], [nan, 1.0])
    assert not same_value([nan], [1.0])


@pytest.mark.parametrize("predicted", [
    "__import__('os').system('touch /tmp/azr-pwned')",
    "f(1)",
    "Hello world",
    "[1, 2",
    "1; 2",
    "",
])
def test_non_literal_predictions_are_wrong_and_never_run(predicted, tmp_path):
    assert not check_deduction("1", predicted)


def test_parse_input_reads_argument_lists():
    assert parse_input("1, [2, 3], {'a': 1}") == (1, [2, 3], {"a": 1})
    assert parse_input("'Hello world'") == ("Hello world",)
    assert parse_input("") == ()
    assert parse_input("(1, 2),") == ((1, 2),)


@pytest.mark.parametrize("text", [
    "1) or True or (1",
    "1)(2",
    "x=1",
    "*[1, 2]",
    "len('a')",
    "1 # )\n, __import__('os')",
    "[" * 200 + "]" * 200,
    "\x00",
])
def test_parse_input_refuses_anything_but_literals(text):
    with pytest.raises(InputError):
        parse_input(text)
