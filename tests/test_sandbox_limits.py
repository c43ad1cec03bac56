"""Resource limits: every bomb is contained by the jail's rlimits and the worker's timer and caps."""

from __future__ import annotations

from sandbox import SandboxConfig, Status, open_sandbox

CFG = SandboxConfig(workers=2, timeout_s=0.5, memory_mb=256, max_processes=4, max_stdout_bytes=10_000)


def test_infinite_loop_times_out(sb):
    res = sb.run("while True:\n    pass")
    assert res.status is Status.timeout and res.seconds < 5


def test_sleep_times_out(sb):
    assert sb.run("import time\ntime.sleep(30)").status is Status.timeout


def test_infinite_loop_in_f_times_out(sb):
    assert sb.run("def f(x):\n    while True:\n        x += 1", "0").status is Status.timeout


def test_memory_bomb_is_a_memory_verdict():
    # Zero-filling 200 MB before the third allocation fails took over 0.5 s on a loaded machine:
    # a pool of its own with room to finish (the verdict is what is tested, not the time).
    with open_sandbox(CFG.model_copy(update={"timeout_s": 5.0})) as sb:
        res = sb.run("x = [bytearray(10**8) for _ in range(100)]")
    assert res.status is Status.memory


def test_fork_bomb_is_contained(sb):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    res = sb.run(bomb)
    assert res.status in (Status.timeout, Status.killed)
    assert sb.run("print('still here')").stdout.strip() == "still here"


def test_process_count_is_capped(sb):
    src = "import os, time\nn = 0\ntry:\n    for _ in range(100):\n        if os.fork() == 0:\n            time.sleep(30)\n        n += 1\nexcept OSError:\n    pass\nprint(n)"
    res = sb.run(src)
    assert res.status is Status.ok and int(res.stdout) == CFG.max_processes - 1


def test_thread_bomb_is_contained(sb):
    src = "import threading, time\nn = 0\ntry:\n    for _ in range(1000):\n        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n        n += 1\nexcept RuntimeError:\n    pass\nprint(n)"
    res = sb.run(src)
    assert res.status is Status.ok and int(res.stdout) < CFG.max_processes


def test_stdout_flood_is_stopped(sb):
    res = sb.run("while True:\n    print('x' * 1000)")
    assert res.status is Status.output_limit and len(res.stdout) <= CFG.max_stdout_bytes


def test_stderr_flood_is_stopped(sb):
    res = sb.run("import sys\nwhile True:\n    sys.stderr.write('y' * 1000)")
    assert res.status is Status.output_limit


def test_huge_return_value_is_rejected_not_truncated(sb):
    res = sb.run("def f(n):\n    return 'a' * n", "100000")
    assert res.status is Status.output_too_long and res.value_repr is None


def test_deep_recursion_is_an_error(sb):
    res = sb.run("def f(n):\n    return f(n + 1)", "0")
    assert res.status is Status.error and "RecursionError" in res.error


def test_sub_second_timeout_is_honoured(sb):
    res = sb.run("import time\ntime.sleep(5)")
    assert res.status is Status.timeout and res.seconds < 2.0
