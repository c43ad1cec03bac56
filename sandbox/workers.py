"""One jailed worker as the host sees it: starting it (nsjail, or a bare interpreter for the
unsafe-local backend), the framing of its pipes, the request frames, and the checked reading of its
replies (:func:`to_result`: a reply that is not exactly what a worker sends is a sandbox_error for
that one program, never an exception)."""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import orjson

from sandbox import jail
from sandbox.config import SandboxConfig
from sandbox.errors import SandboxUnavailable
from sandbox.result import ExecResult, Status

Job = tuple[str, str | None]


class WorkerProcess:
    """One worker process (a jail, or a bare interpreter for unsafe-local) and its message framing.

    Both pipes are non-blocking: `queue` buffers what the worker has not read yet, `pump` reads what
    it has written and keeps every complete reply in `frames` (None for a reply that is not JSON)."""

    def __init__(self, argv: list[str], cfg: SandboxConfig, config_path: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self._errlog = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker)
        self._max_frame = 8 * (cfg.max_stdout_bytes + cfg.max_stderr_bytes + cfg.max_output_chars) + 65536
        self._rbuf = bytearray()
        self._wbuf = bytearray()
        self.frames: collections.deque[Any] = collections.deque()
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errlog,
                bufsize=0, start_new_session=True, env={**jail.host_env(), **(env or {})},
            )
        except OSError as exc:
            self._errlog.close()
            raise SandboxUnavailable(f"cannot start {argv[0]}: {exc.strerror}") from None
        self.stdin_fd = self.proc.stdin.fileno()
        self.stdout_fd = self.proc.stdout.fileno()
        os.set_blocking(self.stdin_fd, False)
        os.set_blocking(self.stdout_fd, False)
        try:
            hello = self.wait_frame(time.monotonic() + cfg.startup_timeout_s)
        finally:
            if config_path:
                with contextlib.suppress(OSError):
                    os.unlink(config_path)
        if not isinstance(hello, dict) or hello.get("hello") is not True or type(hello.get("hash_probe")) is not int:
            reason = self.failure_reason()
            self.close()
            raise SandboxUnavailable(reason)
        self.hash_probe: int = hello["hash_probe"]
        wall = hello.get("wall")
        self.clock_offset_s: float = wall - time.time() if type(wall) is float and math.isfinite(wall) else 0.0
        """How far this worker's wall clock is from the host's (a shifted worker: years)."""

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

    # --- writing -------------------------------------------------------------------------------
    def queue(self, data: bytes) -> bool:
        """Queue a request frame and write what the pipe takes now; False when the worker is gone."""
        self._wbuf += data
        return self.flush()

    def flush(self) -> bool:
        while self._wbuf:
            try:
                n = os.write(self.stdin_fd, self._wbuf)
            except BlockingIOError:
                return True
            except OSError:
                return False
            del self._wbuf[:n]
        return True

    @property
    def wants_write(self) -> bool:
        return bool(self._wbuf)

    # --- reading -------------------------------------------------------------------------------
    def pump(self) -> bool:
        """Read what the worker wrote and split it into frames; False on EOF or a broken stream."""
        try:
            chunk = os.read(self.stdout_fd, 65536)  # under glibc's mmap threshold: no mmap per read
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not chunk:
            return False
        self._rbuf += chunk
        while len(self._rbuf) >= 4:
            size = int.from_bytes(self._rbuf[:4], "big")
            if size > self._max_frame:
                return False  # the stream cannot be trusted past this point
            if len(self._rbuf) < 4 + size:
                break
            body = bytes(self._rbuf[4:4 + size])
            del self._rbuf[:4 + size]
            try:
                self.frames.append(orjson.loads(body))
            except orjson.JSONDecodeError:
                self.frames.append(None)
        return True

    def wait_frame(self, deadline: float) -> Any:
        """Block until one frame is there (returned), or the worker is gone or stuck (GONE)."""
        while not self.frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return GONE
            ready_r, ready_w, _ = select.select([self.stdout_fd], [self.stdin_fd] if self.wants_write else [], [], remaining)
            if ready_w and not self.flush():
                return GONE
            if ready_r and not self.pump() and not self.frames:
                return GONE
        return self.frames.popleft()

    def request(self, frame: bytes, wait_s: float) -> Any:
        """Send one request frame and wait for one reply (run_fresh, tests); GONE when none came."""
        if not self.queue(frame):
            return GONE
        return self.wait_frame(time.monotonic() + wait_s)

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


GONE = object()  # no reply: the worker died, hung or broke its framing


def limits_of(cfg: SandboxConfig) -> dict[str, Any]:
    return {
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
        "max_input_chars": cfg.max_input_chars,
        "max_nesting": cfg.max_nesting,
    }


def request_frame(cfg: SandboxConfig, jobs: Sequence[Job]) -> bytes:
    """One request frame: the limits and a batch of jobs."""
    request = {"limits": limits_of(cfg), "jobs": [[src, args] for src, args in jobs]}
    try:
        body = orjson.dumps(request)
    except TypeError:  # a lone surrogate in a program or an input: stdlib json escapes it
        body = json.dumps(request).encode()
    return len(body).to_bytes(4, "big") + body


class Malformed(ValueError):
    """A worker reply that does not have the expected shape."""


def _opt_text(value: Any, cap: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Malformed("a text field is not a string")
    return value[:cap]


def to_result(reply: Any, worker: int | None, *, want_value: bool | None = None,
               max_value_chars: int | None = None, max_text: int = 1 << 20) -> ExecResult:
    """An ExecResult from a worker's reply, checked field by field: any reply that is not exactly
    what a worker sends (wrong types, unknown status, a value where none belongs, over its cap)
    is a sandbox_error for that one program, never an exception."""
    try:
        if not isinstance(reply, dict):
            raise Malformed("not a JSON object")
        raw_status = reply.get("status")
        if not isinstance(raw_status, str) or raw_status not in Status.__members__:
            raise Malformed("unknown status")
        status = Status(raw_status)
        value = reply.get("value")
        if status is not Status.ok:
            value = None
        elif value is not None and not isinstance(value, str):
            raise Malformed("the value is not a string")
        elif want_value is True and value is None:
            raise Malformed("ok without a value")
        elif want_value is False and value is not None:
            raise Malformed("a value for a script")
        elif value is not None and max_value_chars is not None and len(value) > max_value_chars:
            raise Malformed("the value is over its cap")
        exit_code = reply.get("exit_code")
        if exit_code is not None and (type(exit_code) is not int or not -255 <= exit_code <= 255):
            raise Malformed("bad exit code")
        seconds = reply.get("seconds", 0.0)
        if type(seconds) not in (int, float) or not math.isfinite(seconds) or seconds < 0:
            raise Malformed("bad seconds")
        return ExecResult(
            status=status,
            value_repr=value,
            stdout=_opt_text(reply.get("stdout"), max_text) or "",
            stderr=_opt_text(reply.get("stderr"), max_text) or "",
            error=_opt_text(reply.get("error"), 1000),
            exit_code=exit_code,
            seconds=float(seconds),
            detail=_opt_text(reply.get("detail"), 1000),
            worker=worker,
        )
    except Exception as exc:  # anything at all: the stage must get a verdict, not a traceback
        what = str(exc) if isinstance(exc, Malformed) else type(exc).__name__
        return ExecResult(status=Status.sandbox_error, detail=f"malformed reply from the worker ({what})", worker=worker)


def start_worker(cfg: SandboxConfig, *, once: bool = False, clock_shift_s: int = 0) -> WorkerProcess:
    """Start one worker; `clock_shift_s` shifts its wall clock (libfaketime) when installed."""
    if cfg.backend == "unsafe-local":
        argv = [sys.executable, "-I", "-S", "-c", jail.WORKER_SOURCE, *(["--once"] if once else [])]
        return WorkerProcess(argv, cfg, env=jail.clock_env(clock_shift_s))
    nsjail = jail.find_nsjail(cfg)
    interp = jail.find_interpreter(cfg.python_path)
    path = jail.write_config(jail.build_config(cfg, interp, once=once, clock_shift_s=clock_shift_s))
    return WorkerProcess([nsjail, "--config", path], cfg, config_path=path)
