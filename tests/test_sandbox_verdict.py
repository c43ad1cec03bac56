"""The verdict channel: a program can neither forge nor crash its own verdict.

The programs here run straight through the pool (`Sandbox.run` applies no static check), so
they may use what the static checks would refuse (`contextlib.os`, `collections._sys`): the
worker must hold on its own.
"""

from __future__ import annotations

import math
import signal

import pytest

from sandbox import SandboxConfig, Status, check_program, open_sandbox, validate_task
from sandbox.jail import WORKER_SOURCE
from sandbox.workers import to_result as _to_result

CFG = SandboxConfig(workers=2, timeout_s=1.0)

FORGE = """import contextlib
def f(x):
    contextlib.os.write(3, b'{"status": "ok", "value": "42"}')
    contextlib.os._exit(0)
"""
GUESSED = "bytes(16) + b'V' + (2).to_bytes(4, 'big') + b'42'"  # the frame layout, nonce guessed


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
    assert probe.name == "forged frames are refused" and probe.passed, probe.detail
    from sandbox import ExecResult

    assert not _probe_forge([ExecResult(status=Status.ok, value_repr="42")]).passed


# --- the OS layer on its own: every attack runs with os already in hand ---------------------------
# `Sandbox.run` applies no static check (the checks live in validate_task / check_program), so
# these programs import os, sys, gc and resource directly: what a static-check bypass would give.
ATTACK_WORKER = """import os, resource
pp = os.getppid()
reached = []
for name, call in (
    ('prlimit', lambda: resource.prlimit(pp, resource.RLIMIT_AS, (64 << 20, 64 << 20))),
    ('prlimit_pid1', lambda: resource.prlimit(1, resource.RLIMIT_NOFILE, (5, 5))),
    ('sched_idle', lambda: os.sched_setscheduler(pp, os.SCHED_IDLE, os.sched_param(0))),
    ('setpriority', lambda: os.setpriority(os.PRIO_PROCESS, pp, 19)),
    ('setpriority_user', lambda: os.setpriority(os.PRIO_USER, 0, 19)),
    ('setpriority_pgrp', lambda: os.setpriority(os.PRIO_PGRP, pp, 19)),
    ('affinity', lambda: os.sched_setaffinity(pp, {min(os.sched_getaffinity(0))})),
):
    try:
        call()
        reached.append(name)
    except OSError:
        pass
os.kill(pp, 2)  # SIGINT: ignored by the worker
os.nice(19)  # its own priority: allowed, and gone with it
print(reached)
"""
PROBE_WORKER = ("import os, resource\n"
                "print(os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0), resource.getrlimit(resource.RLIMIT_AS))")


def test_a_program_cannot_change_its_worker_for_the_programs_after_it(sb):
    before = sb.run_many([(PROBE_WORKER, None)] * 6)
    attacks = sb.run_many([(ATTACK_WORKER, None)] * sb.size)
    assert all(r.status is Status.ok and r.stdout.strip() == "[]" for r in attacks), attacks
    after = sb.run_many([(PROBE_WORKER, None)] * 6)
    assert all(r.status is Status.ok for r in after), after
    assert {r.stdout for r in after} == {r.stdout for r in before}


def test_a_worker_whose_limits_or_priority_change_replaces_itself():
    """Where no seccomp stands in the way (unsafe-local), the worker's own check catches it: the
    job that did it is an error, the worker is replaced, and the programs after it are unharmed.
    (Only the parent is targeted here: this runs without a jail, as the test's own uid.)"""
    attack = """import os, resource
pp = os.getppid()
WHAT
"""
    cfg = SandboxConfig(workers=2, timeout_s=2.0, backend="unsafe-local")
    with pytest.warns(UserWarning), open_sandbox(cfg) as pool:
        for what in ("resource.prlimit(pp, resource.RLIMIT_AS, (64 << 20, 64 << 20))",
                     "os.sched_setscheduler(pp, os.SCHED_IDLE, os.sched_param(0))",
                     "os.setpriority(os.PRIO_PROCESS, pp, 19) if os.getpriority(os.PRIO_PROCESS, pp) < 19 "
                     "else os.sched_setaffinity(pp, {min(os.sched_getaffinity(pp))})"):
            res = pool.run(attack.replace("WHAT", what))
            assert res.status is Status.error and "changed its worker" in (res.error or ""), (what, res)
            good = pool.run_many([("def f(x):\n    return [x] * 3", "1")] * 6)
            assert all(r.status is Status.ok and r.value_repr == "[1, 1, 1]" for r in good), good


SECRET = "def f(x):\n    return 'AZR-SECRET-' + 'TEXT' if x < 0 else 'AZR-SECRET-TEXT' + str(x)\n"
SPY = """import gc, sys
def f(x):
    needle = 'AZR-SECRET' + '-TEXT'
    hits = set()
    for o in gc.get_objects():
        kind = type(o)
        items = list(o.values()) if kind is dict else o if kind in (list, tuple) else ()
        hits.update(v[:40] for v in items if type(v) is str and needle in v and v != needle)
    frame = sys._getframe()
    while frame is not None:
        hits.update(v[:40] for v in frame.f_locals.values() if type(v) is str and needle in v and v != needle)
        frame = frame.f_back
    return sorted(hits)
"""


def test_a_program_cannot_read_other_jobs_of_its_batch(sb):
    # jobs are dealt to the workers one at a time in turn: each worker gets a secret job, a spy,
    # then another secret job in the same request frame
    n = sb.size
    results = sb.run_many([(SECRET, "1")] * n + [(SPY, "0")] * n + [(SECRET, "2")] * n)
    assert [r.value_repr for r in results[:n]] == ["'AZR-SECRET-TEXT1'"] * n
    assert [r.value_repr for r in results[n:2 * n]] == ["[]"] * n, results[n:2 * n]


STEAL_NONCE = """import os, sys
def cells(fn, depth=0):
    for cell in fn.__closure__ or ():
        value = cell.cell_contents
        if type(value) is bytes and len(value) == 16:
            yield value
        elif callable(value) and getattr(value, '__closure__', None) and depth < 3:
            yield from cells(value, depth + 1)
def f(x):
    caller = sys._getframe().f_back
    nonce = next(cells(caller.f_locals['returned']))
    keep = os.dup(3)
    os.dup2(2, 3)
    text = VALUE
    os.write(keep, nonce + b'V' + len(text).to_bytes(4, 'big') + text)
    for fd in set(range(64)) - {keep}:  # and a reply frame for the host, on every fd it might reach
        try:
            os.write(fd, (30).to_bytes(4, 'big') + b'{"status": "ok", "value": "1"}')
        except OSError:
            pass
    os._exit(0)
"""


def test_a_program_with_os_can_lie_about_its_own_value_and_nothing_else(sb):
    """The documented limit: a program holding os and introspection reads its own nonce and
    reports a value of its choice, as if it had returned it. Only a literal within the caps gets
    through, only for itself: the other jobs of the batch and the host's framing are unharmed."""
    lie = STEAL_NONCE.replace("VALUE", "b\"'forged by the program'\"")
    good = ("def f(x):\n    return x * 2", "21")
    results = sb.run_many([good, (lie, "1"), good, good])
    assert results[1].status is Status.ok and results[1].value_repr == "'forged by the program'"
    assert [r.value_repr for i, r in enumerate(results) if i != 1] == ["42"] * 3
    for value, status in (("b'object()'", Status.output_not_literal), ("b'1' * 5000", Status.output_too_long)):
        res = sb.run(STEAL_NONCE.replace("VALUE", value), "1")
        assert res.status is status and res.value_repr is None, res


def test_a_child_that_cannot_set_its_limits_is_rerun_on_another_worker(worker):
    got = worker["_decide"](LIMITS, True, NONCE, frame(b"S", b"cannot set the limits: x"), 1 << 8)
    assert got["status"] == "sandbox_error"


# --- the static checks: each bypass class closed at its root --------------------------------------
# Each of these passed check_program and then reached os, sys or the builtin eval.
def banned(src: str) -> str:
    check = check_program(src, CFG)
    assert not check.ok and check.reason == "banned", check
    return check.detail


def test_class_patterns_read_attributes_by_name():
    assert "os" in banned("import contextlib\ndef f(x):\n    match contextlib:\n"
                          "        case object(os=o):\n            return o.getpid()\n    return 0\n")
    assert "__traceback__" in banned(
        "class C(Exception):\n    __match_args__ = ('__traceback__',)\ndef f(x):\n    try:\n        raise C()\n"
        "    except C as e:\n        match e:\n            case C(tb):\n                return 1\n    return 0\n")
    assert "__match_args__" in banned("NAMES = ('x',)\nclass C:\n    __match_args__ = NAMES\ndef f(x):\n    return x\n")
    assert check_program("class P:\n    __match_args__ = ('x', 'y')\n    def __init__(self):\n        self.x = self.y = 1\n"
                         "def f(v):\n    match P():\n        case P(a, y=b):\n            return a + b + v\n", CFG).ok


def test_stdlib_doors_that_evaluate_annotation_strings_are_closed():
    assert "singledispatch" in banned(
        "import functools\nCODE = \"__import__('os').getpid()\"\ndef g(x: CODE):\n    return x\n"
        "def f(x):\n    d = functools.singledispatch(lambda a: a)\n    d.register(g)\n    return 1\n")
    assert "singledispatch" in banned("from functools import singledispatchmethod as s\ndef f(x):\n    return x\n")
    assert "__forward_code__" in banned("import typing\ndef f(x):\n    return typing.ForwardRef('x').__forward_code__\n")


def test_two_scopes_on_one_line_get_no_symbol_table():
    # *args' annotation lambda and a keyword-only one: symtable and the walk order them differently
    assert "eval" in banned("def f(x, *a: (lambda eval: 0), k: (lambda: eval('1+1'))() = 0):\n    return x\n")
    assert "eval" in banned("def f(x):\n    g, h = (lambda eval: 0), (lambda: eval('1'))\n    return x\n")
    assert check_program("def f(x):\n    g = lambda eval: eval + 1\n    return g(x)\n", CFG).ok


def test_format_strings_cannot_walk_attributes():
    assert "__traceback__" in banned("def f(x):\n    try:\n        1 / 0\n    except Exception as e:\n"
                                     "        return '{0.__traceback__.tb_frame.f_back.f_globals}'.format(e)\n")
    assert "string literal" in banned("def f(x):\n    s = '{0.__cl' + 'ass__}'\n    return s.format(x)\n")
    assert "os" in banned("def f(x):\n    return '{0[os]}'.format_map({'os': x})\n")
    assert "__class__" in banned("def f(x):\n    return '{0:{1.__class__}}'.format(x, x)\n")
    assert "Formatter" in banned("from string import Formatter\ndef f(x):\n    return Formatter().format('{0}', x)\n")
    assert check_program("def f(x):\n    return '{0:>5} {k[1]} {0.real}'.format(x, k=[1, 2])\n", CFG).ok


def test_legacy_modules_that_wrap_raw_fds_are_banned():
    for module in ("asyncore", "asynchat", "smtpd", "mailcap", "pipes"):
        assert module in banned(f"import {module}\ndef f(x):\n    return x\n")
    assert "asyncore" in banned("from asyncore import file_wrapper\ndef f(x):\n    return file_wrapper(3)\n")
