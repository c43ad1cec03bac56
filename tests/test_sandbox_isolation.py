"""Escape attempts against the jail: each test is one isolation property, run through the real pool."""

from __future__ import annotations

import ast

from sandbox import SandboxConfig, Status

CFG = SandboxConfig(workers=2, timeout_s=1.0, max_processes=3)


def out(sb, source: str) -> str:
    res = sb.run(source)
    assert res.status is Status.ok, res
    return res.stdout.strip()


def test_runs_as_unprivileged_uid(sb):
    assert out(sb, "import os\nprint(os.getuid(), os.getgid())") == "65534 65534"


def test_root_filesystem_holds_only_the_interpreter(sb):
    assert sorted(ast.literal_eval(out(sb, "import os\nprint(os.listdir('/'))"))) == ["lib", "lib64", "usr"]


def test_host_files_are_invisible(sb):
    src = "import os\nprint([p for p in ('/etc/passwd', '/proc/self', '/dev/null', '/root', '/work', '/tmp') if os.path.exists(p)])"
    assert out(sb, src) == "[]"


def test_filesystem_is_read_only(sb):
    res = sb.run("open('/usr/lib/python3.11/evil.py', 'w').write('x')")
    assert res.status is Status.error and "Read-only" in (res.error or "")


def test_network_is_off(sb):
    res = sb.run("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=0.5)")
    assert res.status is Status.error and res.error.startswith(("PermissionError", "OSError"))


def test_environment_is_empty(sb):
    assert out(sb, "import os\nprint(dict(os.environ))") == "{}"


def test_cannot_regain_root_or_chroot(sb):
    res = sb.run("import os\nos.setuid(0)")  # uid 0 is not even mapped in the jail: EINVAL
    assert res.status is Status.error and res.error.startswith(("PermissionError", "OSError"))
    res = sb.run("import os\nos.chroot('/')")
    assert res.status is Status.error and "PermissionError" in res.error


def test_ctypes_is_unavailable(sb):
    res = sb.run("import ctypes")
    assert res.status is Status.error and "ImportError" in res.error


def test_signals_cannot_reach_the_worker(sb):
    res = sb.run("import os, signal\nos.kill(1, signal.SIGKILL)\nos.kill(1, signal.SIGTERM)\nprint('alive')")
    assert res.status is Status.ok and res.stdout.strip() == "alive"
    assert out(sb, "print(1 + 1)") == "2"


def test_killing_everything_only_kills_the_program(sb):
    # kill(-1) skips the caller and the jail's pid 1 (the worker): nothing else is left to kill.
    res = sb.run("import os, signal\nos.kill(-1, signal.SIGKILL)")
    assert res.status in (Status.error, Status.killed)
    assert out(sb, "print('next')") == "next"


def test_leftover_processes_do_not_survive_into_the_next_program(sb):
    spawn = "import os, time\npid = os.fork()\nif pid == 0:\n    os.setsid()\n    time.sleep(60)\nprint(pid)"
    first = sb.run_avoiding([(spawn, None)], [1])[0]
    assert first.status is Status.ok and first.worker == 0
    pid = int(first.stdout)
    probe = f"import os\ntry:\n    os.kill({pid}, 0)\n    print('survived')\nexcept ProcessLookupError:\n    print('gone')"
    second = sb.run_avoiding([(probe, None)], [1])[0]
    assert second.worker == 0 and second.stdout.strip() == "gone"
