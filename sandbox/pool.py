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
import math
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from sandbox import jail
from sandbox.config import SandboxConfig
from sandbox.errors import SandboxUnavailable
from sandbox.result import ExecResult, Status

_log = logging.getLogger("azr.sandbox")
_GRACE_S = 10.0  # beyond the program's own timeout, for the worker's fork, kill and reply
_PIPELINE = 4  # jobs queued at one worker at most; refilled when half of them are done
_STEAL_AFTER_S = 0.05  # an idle worker copies a job queued behind one running this long


class UnsafeSandboxWarning(UserWarning):
    """Programs run without isolation (backend unsafe-local)."""


UNSAFE_MESSAGE = (
    "sandbox backend 'unsafe-local': model-written programs run WITHOUT isolation "
    "(plain subprocesses with rlimits only); use backend 'nsjail' for anything but a throwaway machine"
)

Job = tuple[str, str | None]


class _WorkerProcess:
    """One worker process (a jail, or a bare interpreter for unsafe-local) and its message framing.

    Both pipes are non-blocking: `queue` buffers what the worker has not read yet, `pump` reads what
    it has written and keeps every complete reply in `frames` (None for a reply that is not JSON)."""

    def __init__(self, argv: list[str], cfg: SandboxConfig, config_path: str | None = None) -> None:
        self._errlog = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker)
        self._max_frame = 8 * (cfg.max_stdout_bytes + cfg.max_stderr_bytes + cfg.max_output_chars) + 65536
        self._rbuf = bytearray()
        self._wbuf = bytearray()
        self.frames: collections.deque[Any] = collections.deque()
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errlog,
                bufsize=0, start_new_session=True,
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
        """Block until one frame is there (returned), or the worker is gone or stuck (_GONE)."""
        while not self.frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _GONE
            ready_r, ready_w, _ = select.select([self.stdout_fd], [self.stdin_fd] if self.wants_write else [], [], remaining)
            if ready_w and not self.flush():
                return _GONE
            if ready_r and not self.pump() and not self.frames:
                return _GONE
        return self.frames.popleft()

    def request(self, frame: bytes, wait_s: float) -> Any:
        """Send one request frame and wait for one reply (run_fresh, tests); _GONE when none came."""
        if not self.queue(frame):
            return _GONE
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


_GONE = object()  # no reply: the worker died, hung or broke its framing


def _limits(cfg: SandboxConfig) -> dict[str, Any]:
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


def _frame(cfg: SandboxConfig, jobs: Sequence[Job]) -> bytes:
    """One request frame: the limits and a batch of jobs."""
    request = {"limits": _limits(cfg), "jobs": [[src, args] for src, args in jobs]}
    try:
        body = orjson.dumps(request)
    except TypeError:  # a lone surrogate in a program or an input: stdlib json escapes it
        body = json.dumps(request).encode()
    return len(body).to_bytes(4, "big") + body


class _Malformed(ValueError):
    """A worker reply that does not have the expected shape."""


def _opt_text(value: Any, cap: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Malformed("a text field is not a string")
    return value[:cap]


def _to_result(reply: Any, worker: int | None, *, want_value: bool | None = None,
               max_value_chars: int | None = None, max_text: int = 1 << 20) -> ExecResult:
    """An ExecResult from a worker's reply, checked field by field: any reply that is not exactly
    what a worker sends (wrong types, unknown status, a value where none belongs, over its cap)
    is a sandbox_error for that one program, never an exception."""
    try:
        if not isinstance(reply, dict):
            raise _Malformed("not a JSON object")
        raw_status = reply.get("status")
        if not isinstance(raw_status, str) or raw_status not in Status.__members__:
            raise _Malformed("unknown status")
        status = Status(raw_status)
        value = reply.get("value")
        if status is not Status.ok:
            value = None
        elif value is not None and not isinstance(value, str):
            raise _Malformed("the value is not a string")
        elif want_value is True and value is None:
            raise _Malformed("ok without a value")
        elif want_value is False and value is not None:
            raise _Malformed("a value for a script")
        elif value is not None and max_value_chars is not None and len(value) > max_value_chars:
            raise _Malformed("the value is over its cap")
        exit_code = reply.get("exit_code")
        if exit_code is not None and (type(exit_code) is not int or not -255 <= exit_code <= 255):
            raise _Malformed("bad exit code")
        seconds = reply.get("seconds", 0.0)
        if type(seconds) not in (int, float) or not math.isfinite(seconds) or seconds < 0:
            raise _Malformed("bad seconds")
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
        what = str(exc) if isinstance(exc, _Malformed) else type(exc).__name__
        return ExecResult(status=Status.sandbox_error, detail=f"malformed reply from the worker ({what})", worker=worker)


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
        # Per worker, the replies it still owes, in order: (run_many serial, job index, frame number).
        self._owed: list[collections.deque[tuple[int, int, int]]] = [collections.deque() for _ in range(self.size)]
        self._frames = 0
        self._head_since = [0.0] * self.size
        self._serial = 0
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
        if not jobs:
            return []
        with self._lock:
            return _Dispatch(self, jobs, avoid).run()

    def _restart(self, w: int) -> _WorkerProcess:
        self._owed[w].clear()
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


class _Dispatch:
    """One run_many: a single-threaded loop over all workers of the pool.

    Jobs are dealt to the workers one at a time in turn, and each worker always has the next ones
    queued (up to _PIPELINE in flight), so it never waits for the host between programs; replies
    come back one per job, in order. A job with `avoid` set never goes to that worker (the
    determinism check's second run happens in another interpreter). When a worker has nothing
    left to do while another has jobs queued behind one that has run for a while (a timeout in the
    making), it runs a copy of such a job: the first reply counts, the other is dropped when it
    comes (the pool remembers, per worker, which replies it still owes, across calls). A worker
    that dies, hangs past the job's timeout plus a grace, or breaks its framing is killed and
    replaced; the jobs of the frame it was on run again, each alone, and a job that was in the
    frame of two such workers is a sandbox_error (the worker sends quick jobs' replies together,
    so the job that broke it is one of that frame's)."""

    def __init__(self, sb: Sandbox, jobs: list[Job], avoid: list[int | None]) -> None:
        sb._serial += 1
        self.sb, self.jobs, self.avoid, self.serial = sb, jobs, avoid, sb._serial
        self.results: list[ExecResult | None] = [None] * len(jobs)
        self.copies = [0] * len(jobs)  # workers a job is on its way at
        self.tries = [0] * len(jobs)  # times a job was in the frame a worker died in
        self.shared: collections.deque[int] = collections.deque()
        self.avoiding: dict[int, collections.deque[int]] = {}
        for i, w in enumerate(avoid):
            if w is None or not 0 <= w < sb.size:
                self.shared.append(i)
            else:
                self.avoiding.setdefault(w, collections.deque()).append(i)
        self.left = len(jobs)
        self.wait_s = sb.cfg.timeout_s + _GRACE_S

    def _take(self, w: int) -> int | None:
        if self.shared:
            return self.shared.popleft()
        queues = [q for v, q in self.avoiding.items() if v != w and q]
        return max(queues, key=len).popleft() if queues else None

    def _put_back(self, i: int) -> None:
        w = self.avoid[i]
        (self.shared if w is None or not 0 <= w < self.sb.size else self.avoiding.setdefault(w, collections.deque())).appendleft(i)

    def _stealable(self, w: int) -> Iterator[tuple[int, int]]:
        """(worker, job) pairs: a job queued (not running) at another worker that w may copy."""
        sb = self.sb
        for v in sorted(range(sb.size), key=lambda v: -len(sb._owed[v])):
            if v == w or len(sb._owed[v]) < 2:
                continue
            for serial, i, _ in list(sb._owed[v])[:0:-1]:
                if serial == self.serial and self.results[i] is None and self.copies[i] == 1 and self.avoid[i] != w:
                    yield v, i

    def _steal(self, w: int, now: float) -> int | None:
        """A job queued behind a long-running one at another worker, to run a copy of here."""
        return next((i for v, i in self._stealable(w) if now - self.sb._head_since[v] >= _STEAL_AFTER_S), None)

    def _next_steal_at(self, now: float) -> float | None:
        """When an idle worker may next copy a job (so the loop wakes up for it), if ever."""
        sb = self.sb
        times = [sb._head_since[v] + _STEAL_AFTER_S for w in range(sb.size) if not sb._owed[w]
                 for v, _ in self._stealable(w)]
        future = [t for t in times if t > now]
        return min(future) if future else None

    def _send(self, w: int, batch: list[int], now: float) -> None:
        """Send a batch in one frame; a job that was in a dying worker's frame goes in one alone."""
        sb = self.sb
        worker = sb._workers[w]
        if worker is None or worker.proc.poll() is not None:  # died between programs: replace first
            worker = sb._restart(w)
        if not sb._owed[w]:
            sb._head_since[w] = now
        frames = [[i] for i in batch if self.tries[i]]
        if plain := [i for i in batch if not self.tries[i]]:
            frames.append(plain)
        data = []
        for frame in frames:
            sb._frames += 1
            for i in frame:
                sb._owed[w].append((self.serial, i, sb._frames))
                self.copies[i] += 1
            data.append(_frame(sb.cfg, [self.jobs[i] for i in frame]))
        if not worker.queue(b"".join(data)):
            self._fail(w, "the worker died; it was replaced")

    def _fill(self, now: float) -> None:
        """Deal jobs to the workers one at a time in turn, then send each worker its batch."""
        sb = self.sb
        wanting = [w for w in range(sb.size) if len(sb._owed[w]) <= _PIPELINE // 2]
        if not wanting:
            return
        batches: list[list[int]] = [[] for _ in range(sb.size)]
        while wanting:
            for w in list(wanting):
                i = self._take(w) if len(sb._owed[w]) + len(batches[w]) < _PIPELINE else None
                if i is None:
                    wanting.remove(w)
                else:
                    batches[w].append(i)
        for w in range(sb.size):
            if not batches[w] and not sb._owed[w]:
                stolen = self._steal(w, now)
                if stolen is not None:
                    batches[w].append(stolen)
            if batches[w]:
                self._send(w, batches[w], now)

    def _fail(self, w: int, why: str) -> None:
        """Replace a dead or stuck worker. The jobs of the frame it was working on (it may hold
        their replies, and one of them is what went wrong) are suspects: each runs again alone, and
        one that was there twice is a sandbox_error; later frames never started and run again."""
        owed = self.sb._owed[w]
        head_frame = owed[0][2] if owed else None
        again: list[int] = []
        for serial, i, frame in owed:
            if serial != self.serial or self.results[i] is not None:
                continue
            self.copies[i] -= 1
            self.tries[i] += frame == head_frame
            if self.copies[i] == 0:  # no other copy is still on its way
                if self.tries[i] >= 2:
                    self._done(i, ExecResult(status=Status.sandbox_error, detail=why, worker=w))
                else:
                    again.append(i)
        for i in reversed(again):  # back at the front, in their order
            self._put_back(i)
        self.sb._restart(w)

    def _done(self, i: int, result: ExecResult) -> None:
        if self.results[i] is None:
            self.results[i] = result
            self.left -= 1

    def _watch(self, poller: select.poll, watched: dict[int, tuple[int, int]]) -> dict[int, int]:
        """Keep `poller` on every worker's stdout (and stdin while a request is half written)."""
        owner: dict[int, int] = {}
        for w, worker in enumerate(self.sb._workers):
            assert worker is not None
            want = (worker.stdout_fd, worker.stdin_fd if worker.wants_write else -1)
            if watched.get(w) != want:
                for fd in watched.get(w, ()):
                    if fd >= 0:
                        with contextlib.suppress(KeyError):
                            poller.unregister(fd)
                poller.register(want[0], select.POLLIN)
                if want[1] >= 0:
                    poller.register(want[1], select.POLLOUT)
                watched[w] = want
            owner[want[0]] = w
            if want[1] >= 0:
                owner[want[1]] = w
        return owner

    def run(self) -> list[ExecResult]:
        sb = self.sb
        for w, worker in enumerate(sb._workers):
            if worker is None or worker.proc.poll() is not None:
                sb._restart(w)
        poller = select.poll()
        watched: dict[int, tuple[int, int]] = {}
        while self.left:
            now = time.monotonic()
            self._fill(now)
            busy = [w for w in range(sb.size) if sb._owed[w]]
            if not busy:
                break  # nothing runnable is left (cannot happen with two or more workers)
            owner = self._watch(poller, watched)
            deadline = min(sb._head_since[w] for w in busy) + self.wait_s
            if len(busy) < sb.size and (steal_at := self._next_steal_at(now)) is not None:
                deadline = min(deadline, steal_at)
            ready = poller.poll(max(0.0, deadline - now) * 1000 + 1)
            now = time.monotonic()
            for fd, _ in ready:
                w = owner[fd]
                worker = sb._workers[w]
                if worker is None or fd not in (worker.stdin_fd, worker.stdout_fd):
                    continue  # replaced earlier in this round
                if fd == worker.stdin_fd:
                    if not worker.flush():
                        self._fail(w, "the worker died; it was replaced")
                    continue
                alive = worker.pump()
                while worker.frames and sb._owed[w]:
                    serial, i, _ = sb._owed[w].popleft()
                    reply = worker.frames.popleft()
                    sb._head_since[w] = now
                    if serial == self.serial and self.results[i] is None:
                        self._done(i, _to_result(reply, w, want_value=self.jobs[i][1] is not None,
                                                 max_value_chars=sb.cfg.max_output_chars))
                worker.frames.clear()
                if not alive:
                    self._fail(w, "the worker died or broke its framing; it was replaced")
            for w in busy:
                if sb._owed[w] and now - sb._head_since[w] > self.wait_s:
                    self._fail(w, "the worker hung; it was replaced")
        return [r if r is not None else ExecResult(status=Status.sandbox_error, detail="not run") for r in self.results]


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
        reply = worker.request(_frame(cfg, [(source, args)]), cfg.timeout_s + _GRACE_S)
    finally:
        worker.close()
    if reply is _GONE:
        return ExecResult(status=Status.sandbox_error, detail="the fresh jail died or hung")
    return _to_result(reply, None, want_value=args is not None, max_value_chars=cfg.max_output_chars)
