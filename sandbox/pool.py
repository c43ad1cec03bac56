"""The warm worker pool: long-lived jailed workers, one per core, each running programs one at a time.

A worker is `python -I -S` inside its own nsjail (see `jail.py`) running `_worker.py`; it forks a
child per program, so a program costs a fork instead of a jail and an interpreter start. Every
worker is its own interpreter with its own hash seed and address-space layout, which is what the
determinism check needs (it runs a program's second execution on a different worker). A worker
that dies or stops answering is killed and replaced; if no replacement starts, the pool fails
closed with `SandboxUnavailable`.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence

from sandbox import jail
from sandbox.config import SandboxConfig
from sandbox.errors import SandboxUnavailable
from sandbox.result import ExecResult, Status

_log = logging.getLogger("azr.sandbox")
_GRACE_S = 10.0  # beyond the program's own timeout, for the worker's fork, kill and reply


class UnsafeSandboxWarning(UserWarning):
    """Programs run without isolation (backend unsafe-local)."""


UNSAFE_MESSAGE = (
    "sandbox backend 'unsafe-local': model-written programs run WITHOUT isolation "
    "(plain subprocesses with rlimits only); use backend 'nsjail' for anything but a throwaway machine"
)

Job = tuple[str, str | None]


class _WorkerProcess:
    """One worker process (a jail, or a bare interpreter for unsafe-local) and its message framing."""

    def __init__(self, argv: list[str], cfg: SandboxConfig, config_path: str | None = None) -> None:
        self._errlog = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker)
        self._max_frame = 8 * (cfg.max_stdout_bytes + cfg.max_stderr_bytes + cfg.max_output_chars) + 65536
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errlog,
                bufsize=0, start_new_session=True,
            )
        except OSError as exc:
            self._errlog.close()
            raise SandboxUnavailable(f"cannot start {argv[0]}: {exc.strerror}") from None
        try:
            hello = self._read_frame(time.monotonic() + cfg.startup_timeout_s)
        finally:
            if config_path:
                with contextlib.suppress(OSError):
                    os.unlink(config_path)
        if not hello or not hello.get("hello"):
            reason = self.failure_reason()
            self.close()
            raise SandboxUnavailable(reason)
        self.hash_probe: int = hello["hash_probe"]

    def failure_reason(self) -> str:
        """One line on why the worker did not start, from nsjail's own log."""
        self._errlog.seek(0)
        text = self._errlog.read(20000).decode("utf-8", "replace")
        lines = [ln for ln in text.splitlines() if ln.strip() and "no version information available" not in ln]
        last = lines[-1].strip() if lines else "no message"
        if any(w in text for w in ("clone(", "CLONE_NEWUSER", "Operation not permitted", "uid_map", "setgroups")):
            return f"the jail could not be created ({last[:160]}): it needs root or unprivileged user namespaces"
        if "error while loading shared libraries" in text:
            return f"nsjail cannot load a library ({last[:160]}): run scripts/setup.sh (installs libnl-route-3-200)"
        return f"the sandbox worker did not start ({last[:200]}): run `azr doctor` for details"

    def request(self, req: dict, wait_s: float) -> dict | None:
        """Send one program, return the worker's reply, or None when the worker is gone or stuck."""
        data = json.dumps(req).encode()
        try:
            os.write(self.proc.stdin.fileno(), struct.pack(">I", len(data)) + data)
        except OSError:
            return None
        return self._read_frame(time.monotonic() + wait_s)

    def _read_frame(self, deadline: float) -> dict | None:
        head = self._read_exact(4, deadline)
        if head is None:
            return None
        size = struct.unpack(">I", head)[0]
        if size > self._max_frame:
            return None
        body = self._read_exact(size, deadline)
        try:
            return None if body is None else json.loads(body)
        except ValueError:
            return None

    def _read_exact(self, n: int, deadline: float) -> bytes | None:
        fd = self.proc.stdout.fileno()
        buf = bytearray()
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        # Closing stdin lets an idle worker exit; a busy or stuck one is killed (nsjail's pid
        # namespace then takes every process of the jail with it).
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdout.close()
        self._errlog.close()


def _request(cfg: SandboxConfig, source: str, args: str | None) -> dict:
    return {
        "source": source,
        "args": args,
        "timeout": cfg.timeout_s,
        "memory_mb": cfg.memory_mb,
        "nofile": cfg.max_open_files,
        "fsize_mb": cfg.max_file_size_mb,
        # RLIMIT_NPROC counts the user's processes in the jail, and the worker is one of them.
        "nproc": cfg.max_processes + 1,
        "max_stdout": cfg.max_stdout_bytes,
        "max_stderr": cfg.max_stderr_bytes,
        "max_value_chars": cfg.max_output_chars,
        "max_depth": cfg.max_ast_depth,
    }


def _to_result(reply: dict, worker: int | None) -> ExecResult:
    try:
        status = Status(reply.get("status"))
    except ValueError:
        status = Status.error
    return ExecResult(
        status=status,
        value_repr=reply.get("value") if status is Status.ok else None,
        stdout=reply.get("stdout") or "",
        stderr=reply.get("stderr") or "",
        error=reply.get("error"),
        exit_code=reply.get("exit_code"),
        seconds=float(reply.get("seconds") or 0.0),
        detail=reply.get("detail"),
        worker=worker,
    )


def _start_worker(cfg: SandboxConfig, *, once: bool = False) -> _WorkerProcess:
    if cfg.backend == "unsafe-local":
        argv = [sys.executable, "-I", "-S", "-c", jail.WORKER_SOURCE, *(["--once"] if once else [])]
        return _WorkerProcess(argv, cfg)
    nsjail = jail.find_nsjail(cfg)
    interp = jail.find_interpreter(cfg.python_path)
    path = jail.write_config(jail.build_config(cfg, interp, once=once))
    return _WorkerProcess([nsjail, "--config", path], cfg, config_path=path)


class Sandbox:
    """A warm pool of workers; use `open_sandbox(cfg)` to get one as a context manager."""

    def __init__(self, cfg: SandboxConfig) -> None:
        self.cfg = cfg
        self.size = max(2, cfg.workers or os.cpu_count() or 1)
        self._workers: list[_WorkerProcess | None] = []
        self._lock = threading.Lock()
        try:
            for _ in range(self.size):
                self._workers.append(_start_worker(cfg))
        except BaseException:
            self.close()
            raise

    # --- running programs --------------------------------------------------------------------
    def run(self, source: str, args: str | None = None) -> ExecResult:
        """Run one program: as a script when `args` is None, else call `f(*args)` with `args` an
        argument-list literal such as `1, [2, 3]`."""
        return self.run_many([(source, args)])[0]

    def run_many(self, jobs: Sequence[Job]) -> list[ExecResult]:
        """Run many programs across all workers; results come back in the jobs' order."""
        return self._dispatch(list(jobs), [None] * len(jobs))

    def run_avoiding(self, jobs: Sequence[Job], avoid: Sequence[int | None]) -> list[ExecResult]:
        """Like run_many, but job i never runs on worker avoid[i] (a second, independent execution)."""
        return self._dispatch(list(jobs), list(avoid))

    def _dispatch(self, jobs: list[Job], avoid: list[int | None]) -> list[ExecResult]:
        if self.cfg.backend == "unsafe-local":
            _log.warning(UNSAFE_MESSAGE)
        results: list[ExecResult | None] = [None] * len(jobs)
        if not jobs:
            return []
        shared: collections.deque[int] = collections.deque()
        private: list[collections.deque[int]] = [collections.deque() for _ in range(self.size)]
        for i, w in enumerate(avoid):
            (shared if w is None else private[(w + 1) % self.size]).append(i)
        failure: list[BaseException] = []

        def serve(w: int) -> None:
            try:
                while True:
                    try:
                        i = private[w].popleft()
                    except IndexError:
                        try:
                            i = shared.popleft()
                        except IndexError:
                            return
                    results[i] = self._run_on(w, *jobs[i])
            except BaseException as exc:  # surfaced to the caller below
                failure.append(exc)

        with self._lock:
            if len(jobs) == 1 and avoid[0] is None:
                serve(0)
            else:
                threads = [threading.Thread(target=serve, args=(w,), daemon=True) for w in range(self.size)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        if failure:
            raise failure[0]
        return [r if r is not None else ExecResult(status=Status.sandbox_error, detail="not run") for r in results]

    def _run_on(self, w: int, source: str, args: str | None) -> ExecResult:
        worker = self._workers[w]
        if worker is None or worker.proc.poll() is not None:  # died between programs: replace first
            worker = self._restart(w)
        reply = worker.request(_request(self.cfg, source, args), self.cfg.timeout_s + _GRACE_S)
        if reply is None:
            self._restart(w)
            return ExecResult(status=Status.sandbox_error, detail="the worker died or hung; it was replaced", worker=w)
        return _to_result(reply, w)

    def _restart(self, w: int) -> _WorkerProcess:
        old, self._workers[w] = self._workers[w], None
        if old is not None:
            old.close()
        self._workers[w] = _start_worker(self.cfg)
        return self._workers[w]

    # --- introspection and lifetime ------------------------------------------------------------
    def hash_probes(self) -> list[int | None]:
        """Each worker's hash of a fixed string: different values mean different hash seeds."""
        return [w.hash_probe if w else None for w in self._workers]

    def close(self) -> None:
        for i, worker in enumerate(self._workers):
            if worker is not None:
                worker.close()
                self._workers[i] = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_sandbox(cfg: SandboxConfig) -> Sandbox:
    """Start the warm pool, failing closed with SandboxUnavailable; use it as a context manager
    (`with open_sandbox(cfg) as sb:`) or call `close()`."""
    if cfg.backend == "unsafe-local":
        warnings.warn(UNSAFE_MESSAGE, UnsafeSandboxWarning, stacklevel=2)
    return Sandbox(cfg)


def run_fresh(cfg: SandboxConfig, source: str, args: str | None = None) -> ExecResult:
    """Run one program in a jail of its own, started for it and discarded after (slow; for
    comparison and one-off checks)."""
    worker = _start_worker(cfg, once=True)
    try:
        reply = worker.request(_request(cfg, source, args), cfg.timeout_s + _GRACE_S)
    finally:
        worker.close()
    if reply is None:
        return ExecResult(status=Status.sandbox_error, detail="the fresh jail died or hung")
    return _to_result(reply, None)
