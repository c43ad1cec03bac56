"""`azr exec` and `azr doctor`: verdicts as data, exit 0 whenever a verdict was produced."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from azr_cli.sandbox_cmds import doctor_cmd, exec_cmd

app = typer.Typer()
app.command("exec")(exec_cmd)
app.command("doctor")(doctor_cmd)
runner = CliRunner()


@pytest.fixture
def prog(tmp_path):
    path = tmp_path / "prog.py"
    path.write_text("def f(a, b):\n    print('side')\n    return [a, b]\n")
    return path


def run_json(*args: str) -> dict:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_exec_with_input_reports_the_value(prog):
    data = run_json("exec", str(prog), "--input", "1, 'x'")
    assert data["status"] == "ok" and data["output"] == "[1, 'x']" and data["stdout"] == "side\n"


def test_exec_bad_input_is_a_clean_one_line_error(prog):
    data = run_json("exec", str(prog), "--input", "1) or (1")
    assert data["status"] == "error" and data["stderr"] == "" and data["stdout"] == ""
    assert data["error"].startswith("bad input") and "\n" not in data["error"] and "Traceback" not in data["error"]


def test_exec_as_script(tmp_path):
    path = tmp_path / "s.py"
    path.write_text("print('hello')\nraise SystemExit(2)\n")
    data = run_json("exec", str(path))
    assert data["status"] == "error" and data["exit_code"] == 2 and data["stdout"] == "hello\n"
    assert "output" not in data


def test_exec_validate_reports_valid_and_reason(prog):
    data = run_json("exec", str(prog), "--input", "1, 2", "--validate")
    assert data["valid"] is True and data["reason"] is None


def test_exec_invalid_task_still_exits_zero(tmp_path):
    path = tmp_path / "bad.py"
    # 40 strings: two hash seeds order them alike far less often than 5 would (the check compares two runs)
    path.write_text("def f(a):\n    return list({'s%d' % i for i in range(40)})\n")
    data = run_json("exec", str(path), "--input", "0", "--validate")
    assert data["valid"] is False and data["reason"] == "nondeterministic"


def test_exec_timeout_exits_zero(tmp_path):
    path = tmp_path / "loop.py"
    path.write_text("while True:\n    pass\n")
    assert run_json("exec", str(path), "--timeout", "0.3")["status"] == "timeout"


def test_exec_missing_file_is_a_user_error(tmp_path):
    res = runner.invoke(app, ["exec", str(tmp_path / "nope.py")])
    assert res.exit_code != 0 and "cannot read" in str(res.exception)


def test_doctor_passes_here():
    data = run_json("doctor")
    assert data["ok"] is True and all(c["passed"] for c in data["checks"])
