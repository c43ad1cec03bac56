"""The verdict channel: a program can neither forge nor crash its own verdict.

The programs here run straight through the pool (`Sandbox.run` applies no static check), so
they may use what the static checks would refuse (`contextlib.os`, `collections._sys`): the
worker must hold on its own.
"""

from __future__ import annotations

import math
import signal

import pytest

from sandbox import SandboxConfig, Status, open_sandbox, validate_task
from sandbox.jail import WORKER_SOURCE
from sandbox.workers import to_result as _to_result

CFG = SandboxConfig(workers=2, timeout_s=1.0)

FORGE = """import contextlib
def f(x):
    contextlib.os.write(3, b'{"status": "ok", "value": "42"}')
    contextlib.os._exit(0)
"""
GUESSED = "bytes(16) + b'V' + (2).to_bytes(4, 'big') + b'42'"  # the frame layout, nonce guessed


@pytest.fixture(scope="module")
def sb():
    with open_sandbox(CFG) as pool:
        yield pool


def forged(res) -> bool:
    return res.status is Status.ok and res.value_repr == "42"


# --- forging a verdict ----------------------------------------------------------------------------
def test_forged_json_verdict_does_not_validate(sb):
    v = validate_task(sb, FORGE, ["1"], CFG)
    assert not v.valid and v.outputs != ["42"]


def test_forged_json_verdict_is_not_ok_in_the_pool(sb):
    res = sb.run(FORGE, "1")
    assert not forged(res)
    assert res.status is Status.error and "result channel" in (res.error or "")


def test_integer_value_frame_is_a_clean_error(sb):
    src = FORGE.replace('"value": "42"', '"value": 42')
    res = sb.run(src, "1")  # used to raise a pydantic ValidationError out of the host
    assert res.status is Status.error and res.value_repr is None
    v = validate_task(sb, src, ["1"], CFG)  # refused by the static checks now; never an exception
    assert not v.valid and v.reason in ("banned", "error")


def test_patching_worker_globals_and_builtins_cannot_make_a_literal(sb):
    src = """import collections
def f(x):
    sys = collections._sys
    main = sys.modules['__main__']
    for name in ('_is_literal_value', '_literal_depth', '_value_problem'):
        setattr(main, name, lambda *a: True if name == '_is_literal_value' else None)
    main._repr = lambda v: '7'
    b = sys.modules['builtins']
    b.repr = lambda v: '7'
    b.type = lambda *a: int
    b.isinstance = lambda *a: True
    b.len = lambda v: 1
    return object()
"""
    res = sb.run(src, "1")
    assert res.status is not Status.ok and res.value_repr is None
    assert res.status is Status.output_not_literal


def test_patching_the_json_module_changes_nothing(sb):
    src = "import json\ndef f(x):\n    json.dumps = lambda *a, **k: '{\"status\": \"ok\", \"value\": \"42\"}'\n    return [x]"
    res = sb.run(src, "1")
    assert res.status is Status.ok and res.value_repr == "[1]"


def test_lying_metaclass_cannot_pass_for_a_builtin_type(sb):
    src = """class Liar(type):
    def __eq__(cls, other):
        return True
    __hash__ = type.__hash__

class Forty(metaclass=Liar):
    def __iter__(self):
        return iter(())
    def __repr__(self):
        return '42'

def f(x):
    return Forty()
"""
    res = sb.run(src, "1")
    assert not forged(res) and res.status is Status.output_not_literal


@pytest.mark.parametrize("payload", [
    "b'garbage'",
    "b'\\xff\\xfe\\x00\\x80'",
    "b'{\"status\": \"ok\", \"value\": \"42\"}'",
    GUESSED,
    "b'x' * 200_000",
])
@pytest.mark.parametrize("ending", ["return 42", "contextlib.os._exit(0)"])
def test_anything_written_to_the_result_channel_is_an_error(sb, payload, ending):
    src = f"import contextlib\ndef f(x):\n    contextlib.os.write(3, {payload})\n    {ending}"
    res = sb.run(src, "1")
    assert res.status is Status.error and "result channel" in (res.error or ""), res


@pytest.mark.parametrize("frames", [
    "(b'{\"status\": \"ok\", \"value\": \"42\"}',)",
    f"(b'{{\"status\": \"ok\", \"value\": \"42\"}}', {GUESSED})",
    f"({GUESSED},)",
])
def test_forged_frames_on_every_fd_do_not_make_ok(sb, frames):
    src = f"""import contextlib
os = contextlib.os
def f(x):
    for fd in range(3, 21):
        for frame in {frames}:
            try:
                os.write(fd, frame)
            except OSError:
                pass
    os._exit(0)
"""
    res = sb.run(src, "1")
    assert not forged(res) and res.status is Status.error


def test_closing_the_result_channel_is_an_error(sb):
    res = sb.run("import contextlib\ndef f(x):\n    contextlib.os.close(3)\n    return 1", "1")
    assert res.status is Status.error and "without a result" in (res.error or "")


def test_exiting_early_is_an_error_not_ok(sb):
    res = sb.run("import contextlib\ndef f(x):\n    contextlib.os._exit(0)", "1")
    assert res.status is Status.error and res.value_repr is None


def test_system_exit_in_f_is_an_error(sb):
    res = sb.run("def f(x):\n    raise SystemExit(0)", "1")
    assert res.status is Status.error and "SystemExit" in (res.error or "")


def test_closing_every_output_and_looping_still_times_out(sb):
    src = "import contextlib\nfor fd in (1, 2, 3):\n    contextlib.os.close(fd)\nwhile True:\n    pass"
    res = sb.run(src)
    assert res.status is Status.timeout


def test_a_good_program_after_the_attacks_still_works(sb):
    res = sb.run("def f(x):\n    return {'k': [x, (1.5, None)]}", "2")
    assert res.status is Status.ok and res.value_repr == "{'k': [2, (1.5, None)]}"


# --- clean errors for bad inputs and programs -----------------------------------------------------
def test_bad_input_is_a_one_line_error_without_worker_traceback(sb):
    res = sb.run("def f(a):\n    return a", "1) or (1")
    assert res.status is Status.error and res.stderr == ""
    assert res.error.startswith("bad input") and "\n" not in res.error


def test_syntax_error_is_reported_in_stderr(sb):
    res = sb.run("def f(a) return a", "1")
    assert res.status is Status.error and "SyntaxError" in res.error and "SyntaxError" in res.stderr


@pytest.mark.parametrize(("src", "args"), [
    ("def f(a):\n    return '\ud800'", "1"),
    ("def f(a):\n    return a", "'\ud800'"),
    ("x = '\ud800'", None),
])
def test_lone_surrogates_are_a_clean_error(sb, src, args):
    res = sb.run(src, args)  # used to raise out of the host (orjson refuses lone surrogates)
    assert res.status is Status.error and res.value_repr is None
    assert not validate_task(sb, src, [args or "1"], CFG).valid


def test_script_exit_code_and_stderr_are_kept(sb):
    res = sb.run("import sys\nprint('out')\nraise SystemExit('bye')")
    assert res.status is Status.error and res.exit_code == 1 and res.stdout == "out\n" and "bye" in res.stderr


# --- the host reads the worker's replies defensively --------------------------------------------
@pytest.mark.parametrize("reply", [
    None, [], "ok", 42,
    {"status": "ok", "value": 42},
    {"status": "ok", "value": ["42"]},
    {"status": "bogus"},
    {"status": 1},
    {"status": "ok", "value": "1", "exit_code": "0"},
    {"status": "ok", "value": "1", "exit_code": True},
    {"status": "ok", "value": "1", "seconds": "fast"},
    {"status": "ok", "value": "1", "seconds": math.nan},
    {"status": "ok", "value": "1", "stdout": ["x"]},
    {"status": "error", "error": {"nested": 1}},
])
def test_malformed_reply_is_a_sandbox_error(reply):
    res = _to_result(reply, 0)
    assert res.status is Status.sandbox_error and res.value_repr is None and res.worker == 0


def test_reply_value_must_fit_what_was_asked():
    assert _to_result({"status": "ok"}, 1, want_value=True).status is Status.sandbox_error
    assert _to_result({"status": "ok", "value": "1"}, 1, want_value=False).status is Status.sandbox_error
    long = {"status": "ok", "value": "1" * 2000}
    assert _to_result(long, 1, want_value=True, max_value_chars=1000).status is Status.sandbox_error
    good = _to_result({"status": "ok", "value": "[1]", "seconds": 0.5, "exit_code": 0}, 1, want_value=True)
    assert good.status is Status.ok and good.value_repr == "[1]" and good.seconds == 0.5


# --- the worker parent's own decision, on crafted frames ----------------------------------------
@pytest.fixture(scope="module")
def worker():
    """The worker's functions, loaded without starting its main loop."""
    head, tail = WORKER_SOURCE.rsplit("\nmain()", 1)
    assert not tail.strip()
    ns: dict = {"__name__": "azr_worker_under_test"}
    exec(compile(head, "_worker.py", "exec"), ns)
    return ns


LIMITS = {"max_value_chars": 1000, "max_depth": 100}
NONCE = bytes(range(16))


def frame(kind: bytes, text: bytes, nonce: bytes = NONCE, size: int | None = None) -> bytes:
    return nonce + kind + (len(text) if size is None else size).to_bytes(4, "big") + text


def decide(worker, data: bytes, code: int = 0, want_value: bool = True) -> dict:
    return worker["_decide"](LIMITS, want_value, NONCE, data, code << 8)


def test_worker_accepts_a_genuine_value_frame(worker):
    assert decide(worker, frame(b"V", b"[1, 'a', (2.5, None)]")) == {"status": "ok", "exit_code": 0,
                                                                      "value": "[1, 'a', (2.5, None)]"}


@pytest.mark.parametrize(("text", "status"), [
    (b"object()", "output_not_literal"),
    (b"nan", "output_not_literal"),
    (b"[" * 150 + b"]" * 150, "output_not_literal"),
    (b"1" * 1001, "output_too_long"),
])
def test_worker_rechecks_the_value_text_itself(worker, text, status):
    assert decide(worker, frame(b"V", text))["status"] == status


@pytest.mark.parametrize("data", [
    frame(b"V", b"42", nonce=bytes(16)),
    frame(b"V", b"42") + b"trailing",
    b"junk" + frame(b"V", b"42"),
    frame(b"V", b"42", size=5),
    frame(b"Q", b"42"),
    frame(b"V", b"\xff\xfe"),
    NONCE[:10],
])
def test_worker_refuses_a_bad_frame(worker, data):
    got = decide(worker, data)
    assert got["status"] == "error" and "result channel" in got["error"]


def test_worker_status_follows_the_exit_status(worker):
    assert decide(worker, frame(b"V", b"42"), code=3)["status"] == "error"
    assert decide(worker, b"", code=0)["status"] == "error"
    killed = worker["_decide"](LIMITS, True, NONCE, frame(b"V", b"42"), signal.SIGKILL)
    assert killed["status"] == "killed"
    assert decide(worker, frame(b"V", b"1"), want_value=False)["status"] == "error"
    assert decide(worker, frame(b"V", b""), want_value=False) == {"status": "ok", "exit_code": 0}


# --- azr doctor proves it on this machine -------------------------------------------------------
def test_doctor_probe_says_the_verdict_cannot_be_forged(sb):
    from sandbox.doctor import _FORGE_JOBS, _probe_forge

    probe = _probe_forge(sb.run_many(_FORGE_JOBS))
    assert probe.name == "verdict cannot be forged" and probe.passed, probe.detail
    from sandbox import ExecResult

    assert not _probe_forge([ExecResult(status=Status.ok, value_repr="42")]).passed
