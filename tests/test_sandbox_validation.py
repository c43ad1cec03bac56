"""Task validation: every rejection keeps its reason."""

from __future__ import annotations

import pytest

from sandbox import SandboxConfig, jail, open_sandbox, validate_task, validate_tasks

CFG = SandboxConfig(workers=2, timeout_s=1.0)


def reason(sb, program: str, inputs: list[str]) -> str | None:
    return validate_task(sb, program, inputs, CFG).reason


def test_identity_seed_task_is_valid(sb):
    v = validate_task(sb, "def f(a):\n    return a", ["'Hello world'"], CFG)
    assert v.valid and v.outputs == ["'Hello world'"]


def test_helpers_before_f_are_allowed(sb):
    prog = "class Box:\n    def __init__(self, v):\n        self.v = v\n\ndef double(x):\n    return 2 * x\n\ndef f(a, b):\n    return [double(Box(a).v), b]"
    v = validate_task(sb, prog, ["1, {'k': (2, 3)}", "5, None"], CFG)
    assert v.valid and v.outputs == ["[2, {'k': (2, 3)}]", "[10, None]"]


def test_hash_dependent_set_order_is_nondeterministic(sb):
    assert reason(sb, "def f(a):\n    return list({'apple', 'pear', 'plum', 'fig', 'kiwi'})", ["0"]) == "nondeterministic"


def test_id_dependent_output_is_nondeterministic(sb):
    assert reason(sb, "def f(a):\n    return id(a) % 100003", ["[1, 2]"]) == "nondeterministic"


def test_returning_a_set_is_deterministic_by_value(sb):
    assert validate_task(sb, "def f(a):\n    return {'apple', 'pear', 'plum', 'fig'}", ["0"], CFG).valid


def test_syntax_error_is_parse(sb):
    assert reason(sb, "def f(a) return a", ["1"]) == "parse"


def test_null_byte_is_parse(sb):
    assert reason(sb, "def f(a):\n    return a\x00", ["1"]) == "parse"


def test_giant_source_is_parse(sb):
    assert reason(sb, "def f(a):\n    return a\n" + "x = 1\n" * 10_000, ["1"]) == "parse"


def test_deep_nesting_is_parse(sb):
    assert reason(sb, "def f(a):\n    return " + "[" * 500 + "]" * 500, ["1"]) == "parse"


def test_missing_f_is_no_entry(sb):
    assert reason(sb, "def g(a):\n    return a", ["1"]) == "no_entry"


@pytest.mark.parametrize("program", [
    "import os\ndef f(a):\n    return a",
    "import os.path\ndef f(a):\n    return a",
    "from os import path\ndef f(a):\n    return a",
    "def f(a):\n    import subprocess\n    return a",
    "def f(a):\n    def g():\n        from random import randint\n    return a",
])
def test_banned_import_at_any_depth(sb, program):
    assert reason(sb, program, ["1"]) == "banned"


@pytest.mark.parametrize("program", [
    "def f(a):\n    return eval('a')",
    "def f(a):\n    e = exec\n    return a",
    "def f(a):\n    return open('/etc/passwd').read()",
    "def f(a):\n    return ().__class__.__base__.__subclasses__()",
    "def f(a):\n    return __import__('os').getpid()",
])
def test_banned_calls_and_names(sb, program):
    assert reason(sb, program, ["1"]) == "banned"


def test_input_injection_is_parse(sb):
    assert reason(sb, "def f(a):\n    return a", ["1) or True or (1"]) == "parse"


def test_input_must_be_literals(sb):
    assert reason(sb, "def f(a):\n    return a", ["len('abc')"]) == "parse"


def test_raising_is_error(sb):
    assert reason(sb, "def f(a):\n    return a / 0", ["1"]) == "error"


def test_infinite_loop_is_timeout(sb):
    assert reason(sb, "def f(a):\n    while True:\n        pass", ["1"]) == "timeout"


def test_memory_bomb_is_memory(sb):
    assert reason(sb, "def f(a):\n    return len(' ' * (10 ** 11))", ["1"]) == "memory"


def test_print_flood_is_output_limit(sb):
    assert reason(sb, "def f(a):\n    while True:\n        print(a * 100)", ["'x'"]) == "output_limit"


def test_nan_is_not_literal(sb):
    assert reason(sb, "def f(a):\n    return float('nan')", ["1"]) == "output_not_literal"


def test_object_is_not_literal(sb):
    assert reason(sb, "class A:\n    pass\n\ndef f(a):\n    return A()", ["1"]) == "output_not_literal"


def test_lying_int_subclass_is_not_literal(sb):
    prog = "class I(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\n\ndef f(a):\n    return I(a)"
    assert reason(sb, prog, ["1"]) == "output_not_literal"


def test_long_output_is_output_too_long(sb):
    assert reason(sb, "def f(a):\n    return 'x' * a", [str(CFG.max_output_chars + 1)]) == "output_too_long"


def test_batch_keeps_order_and_reasons(sb):
    items = [("def f(a):\n    return a + 1", ["1", "2"]), ("import sys\ndef f(a):\n    return a", ["1"]),
             ("def f(a):\n    return a[0]", ["[]"]), ("def f(a):\n    return -a", ["0.0"])]
    got = validate_tasks(sb, items, CFG)
    assert [(v.valid, v.reason) for v in got] == [(True, None), (False, "banned"), (False, "error"), (True, None)]
    assert got[0].outputs == ["2", "3"] and got[3].outputs == ["-0.0"]


# --- determinism: three hash seeds, and a shifted wall clock ---------------------------------------
def test_every_input_runs_on_three_different_workers(sb, monkeypatch):
    runs: list = []
    real_run_many, real_run_on = sb.run_many, sb.run_on
    monkeypatch.setattr(sb, "run_many", lambda jobs: runs.append(real_run_many(jobs)) or runs[-1])
    monkeypatch.setattr(sb, "run_on", lambda jobs, allowed: runs.append(real_run_on(jobs, allowed)) or runs[-1])
    inputs = [str(i) for i in range(9)]
    assert validate_task(sb, "def f(a):\n    return a + 1", inputs, CFG).valid
    first, later = runs
    assert sb.size >= 3 and len(later) == 2 * len(inputs)
    for i in range(len(inputs)):
        workers = {first[i].worker, later[i].worker, later[len(inputs) + i].worker}
        assert len(workers) == 3, workers
        assert not sb.shifted_workers() or workers & sb.shifted_workers()


CLOCK_CFG = SandboxConfig(workers=2, timeout_s=1.0,
                          banned_modules=[m for m in SandboxConfig().banned_modules if m not in ("time", "datetime")])


@pytest.mark.skipif(jail.find_faketime() is None, reason="libfaketime is not installed (scripts/setup.sh)")
@pytest.mark.parametrize("program", [
    "import time\ndef f(a):\n    return time.strftime('%Y-%m-%d')",
    "import time\ndef f(a):\n    return int(time.time()) // 60",
    "import datetime\ndef f(a):\n    return datetime.datetime.now().hour",
    "import datetime\ndef f(a):\n    return str(datetime.date.today())",
    "import gzip\ndef f(a):\n    return gzip.compress(a)[4:8]",
    "import email.utils\ndef f(a):\n    return email.utils.formatdate()[:16]",
    "from email.utils import localtime\ndef f(a):\n    return localtime().minute",
])
def test_gold_that_reads_the_clock_is_nondeterministic(program):
    with open_sandbox(CLOCK_CFG) as pool:
        v = validate_task(pool, program, ["b'x'" if "gzip" in program else "1"], CLOCK_CFG)
        assert pool.shifted_workers()
    assert not v.valid and v.reason == "nondeterministic", v


def test_a_shifted_worker_hides_its_settings_and_keeps_its_timers():
    with open_sandbox(CLOCK_CFG) as pool:
        pool.ensure_size(3)
        every = [[w] for w in range(pool.size)]
        env = pool.run_on([("import os\nprint(dict(os.environ))", None)] * pool.size, every)
        loops = pool.run_on([("while True:\n    pass", None)] * pool.size, every)
    assert [r.stdout.strip() for r in env] == ["{}"] * pool.size
    assert all(r.status.value == "timeout" and 0.9 < r.seconds < 1.5 for r in loops), loops
