"""The warm worker pool: long-lived jailed workers, one per core, each running programs one at a time.

A worker is `python -I -S` inside its own nsjail (see `jail.py`) running `_worker.py`; it forks a
child per program, so a program costs a fork instead of a jail and an interpreter start. Every
worker is its own interpreter with its own hash seed and address-space layout, and every third
one (slots 2, 5, ...) runs under a shifted wall clock when libfaketime is installed: that is what
the determinism check needs (it runs a program on three different workers, one of them shifted:
see `tasks.validate_tasks`). A worker that dies or stops answering is killed and replaced; if no
replacement starts, the pool fails closed with `SandboxUnavailable`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import threading
import time
import warnings
from collections.abc import Collection, Iterator, Sequence

from sandbox import jail
from sandbox.config import SandboxConfig
from sandbox.result import ExecResult, Status
from sandbox.workers import GONE, Job, WorkerProcess, request_frame, start_worker, to_result

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

Allowed = Collection[int] | None  # the workers a job may run on (None: any)
_SHIFTED_EVERY = 3  # slots 2, 5, 8, ... run under a shifted wall clock (when libfaketime is installed)


class Sandbox:
    """A warm pool of workers; use `open_sandbox(cfg)` to get one as a context manager."""

    def __init__(self, cfg: SandboxConfig) -> None:
        self.cfg = cfg
        self.size = max(2, cfg.workers) if cfg.workers else max(3, os.cpu_count() or 1)
        self._workers: list[WorkerProcess | None] = []
        # Per worker, the replies it still owes, in order: (run_many serial, job index, frame number).
        self._owed: list[collections.deque[tuple[int, int, int]]] = [collections.deque() for _ in range(self.size)]
        self._frames = 0
        self._head_since = [0.0] * self.size
        self._serial = 0
        self._lock = threading.Lock()
        try:
            for w in range(self.size):
                self._workers.append(self._start(w))
        except BaseException:
            self.close()
            raise

    def _start(self, w: int) -> WorkerProcess:
        shifted = self.cfg.shift_clock and w % _SHIFTED_EVERY == _SHIFTED_EVERY - 1
        return start_worker(self.cfg, clock_shift_s=jail.CLOCK_SHIFT_S if shifted else 0)

    def ensure_size(self, n: int) -> None:
        """Grow the pool to at least `n` workers (the determinism check needs three)."""
        with self._lock:
            while self.size < n:
                self._owed.append(collections.deque())
                self._head_since.append(0.0)
                self._workers.append(None)
                self.size += 1
                self._workers[-1] = self._start(self.size - 1)

    def shifted_workers(self) -> set[int]:
        """The workers whose wall clock is shifted (as each measured it when it started)."""
        return {w for w, worker in enumerate(self._workers) if worker and abs(worker.clock_offset_s) > 3600}

    # --- running programs --------------------------------------------------------------------
    def run(self, source: str, args: str | None = None) -> ExecResult:
        """Run one program: as a script when `args` is None, else call `f(*args)` with `args` an
        argument-list literal such as `1, [2, 3]`."""
        return self.run_many([(source, args)])[0]

    def run_many(self, jobs: Sequence[Job]) -> list[ExecResult]:
        """Run many programs across all workers; results come back in the jobs' order."""
        return self._dispatch(list(jobs), [None] * len(jobs))

    def run_avoiding(self, jobs: Sequence[Job], avoid: Sequence[int | Collection[int] | None]) -> list[ExecResult]:
        """Like run_many, but job i never runs on worker avoid[i] (one worker, or several): an
        independent execution, in another interpreter."""
        every = range(self.size)
        allowed: list[Allowed] = []
        for a in avoid:
            if a is None:
                allowed.append(None)
            else:
                gone = {a} if isinstance(a, int) else set(a)
                allowed.append(None if not gone & set(every) else [w for w in every if w not in gone])
        return self.run_on(jobs, allowed)

    def run_on(self, jobs: Sequence[Job], allowed: Sequence[Allowed]) -> list[ExecResult]:
        """Like run_many, but job i runs only on one of the workers allowed[i] (None: any); a job
        that no worker of the pool may run is a sandbox_error."""
        return self._dispatch(list(jobs), [None if a is None else frozenset(a) for a in allowed])

    def _dispatch(self, jobs: list[Job], allowed: list[frozenset[int] | None]) -> list[ExecResult]:
        if self.cfg.backend == "unsafe-local":
            _log.warning(UNSAFE_MESSAGE)
        if not jobs:
            return []
        with self._lock:
            return _Dispatch(self, jobs, allowed).run()

    def _restart(self, w: int) -> WorkerProcess:
        self._owed[w].clear()
        old, self._workers[w] = self._workers[w], None
        if old is not None:
            old.close()
        self._workers[w] = self._start(w)
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
    come back one per job, in order. When a worker has nothing
    left to do while another has jobs queued behind one that has run for a while (a timeout in the
    making), it runs a copy of such a job: the first reply counts, the other is dropped when it
    comes (the pool remembers, per worker, which replies it still owes, across calls). A job with
    `allowed` set runs (and is copied) only on those workers. A worker
    that dies, hangs past the job's timeout plus a grace, or breaks its framing is killed and
    replaced; the jobs of the frame it was on run again, each alone, and a job that was in the
    frame of two such workers is a sandbox_error (the worker sends quick jobs' replies together,
    so the job that broke it is one of that frame's)."""

    def __init__(self, sb: Sandbox, jobs: list[Job], allowed: list[frozenset[int] | None]) -> None:
        sb._serial += 1
        self.sb, self.jobs, self.serial = sb, jobs, sb._serial
        self.results: list[ExecResult | None] = [None] * len(jobs)
        self.left = len(jobs)
        self.allowed = [None if a is None else a & frozenset(range(sb.size)) for a in allowed]
        self.copies = [0] * len(jobs)  # workers a job is on its way at
        self.tries = [0] * len(jobs)  # times a job was in the frame a worker died in
        self.shared: collections.deque[int] = collections.deque()
        self.only: dict[frozenset[int], collections.deque[int]] = {}  # jobs by the workers they may run on
        for i, a in enumerate(self.allowed):
            if a is None:
                self.shared.append(i)
            elif a:
                self.only.setdefault(a, collections.deque()).append(i)
            else:
                self._done(i, ExecResult(status=Status.sandbox_error, detail="no worker of the pool may run it"))
        self.wait_s = sb.cfg.timeout_s + _GRACE_S

    def _allows(self, i: int, w: int) -> bool:
        a = self.allowed[i]
        return a is None or w in a

    def _take(self, w: int) -> int | None:
        if self.shared:
            return self.shared.popleft()
        queues = [q for a, q in self.only.items() if w in a and q]
        return max(queues, key=len).popleft() if queues else None

    def _put_back(self, i: int) -> None:
        a = self.allowed[i]
        (self.shared if a is None else self.only.setdefault(a, collections.deque())).appendleft(i)

    def _stealable(self, w: int) -> Iterator[tuple[int, int]]:
        """(worker, job) pairs: a job queued (not running) at another worker that w may copy."""
        sb = self.sb
        for v in sorted(range(sb.size), key=lambda v: -len(sb._owed[v])):
            if v == w or len(sb._owed[v]) < 2:
                continue
            for serial, i, _ in list(sb._owed[v])[:0:-1]:
                if serial == self.serial and self.results[i] is None and self.copies[i] == 1 and self._allows(i, w):
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
        worker = self._alive(w)
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
            data.append(request_frame(sb.cfg, [self.jobs[i] for i in frame]))
        if not worker.queue(b"".join(data)):
            self._fail(w, "the worker died; it was replaced")

    def _alive(self, w: int) -> WorkerProcess:
        """Worker w, replaced first if it died between programs (what it owed runs again)."""
        worker = self.sb._workers[w]
        if worker is None or worker.proc.poll() is not None:
            self._fail(w, "the worker died; it was replaced")
            worker = self.sb._workers[w]
        assert worker is not None
        return worker

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
        for w in range(sb.size):
            self._alive(w)
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
                        self._done(i, to_result(reply, w, want_value=self.jobs[i][1] is not None,
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
    worker = start_worker(cfg, once=True)
    try:
        reply = worker.request(request_frame(cfg, [(source, args)]), cfg.timeout_s + _GRACE_S)
    finally:
        worker.close()
    if reply is GONE:
        return ExecResult(status=Status.sandbox_error, detail="the fresh jail died or hung")
    return to_result(reply, None, want_value=args is not None, max_value_chars=cfg.max_output_chars)
