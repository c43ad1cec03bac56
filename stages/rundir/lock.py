"""The run lock: one writer per run directory at a time.

Every command that writes a run holds an exclusive ``flock`` on ``<run>/.lock`` for as long as it
writes. The kernel drops the lock when the process dies, however it dies, so a lock is never
stale: a second writer stops at once with one line naming the holder's pid and command, and
whoever holds the lock knows that every temporary folder it finds belongs to a dead process.
Readers (`azr status`, `inspect`, `report`, `eval`) never take it.

Within one process the lock is re-entrant and shared by every :class:`~stages.rundir.run.Run` object
of the same directory (the loop, a stage and a checkpoint write nest their holds).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from stages.errors import RunLocked

LOCK_FILE = ".lock"

_held: dict[str, list[int]] = {}  # realpath of the run -> [fd, depth] for this process


def holder(run_path: Path) -> str:
    """Who holds the lock, as written by the holder: ``pid N (command), since T``."""
    try:
        text = (Path(run_path) / LOCK_FILE).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return text or "another process (pid not yet written)"


@contextlib.contextmanager
def hold(run_path: Path) -> Iterator[None]:
    """Hold the run's lock for the block; raise :class:`RunLocked` if another process holds it."""
    key = os.path.realpath(run_path)
    entry = _held.get(key)
    if entry is not None:
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
        return
    fd = os.open(Path(run_path) / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLocked(
            f"{run_path} is being written by {holder(run_path)}; wait for it to finish or stop it "
            "(one writer per run)"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300]
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} ({command}), since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
    _held[key] = [fd, 1]
    try:
        yield
    finally:
        _held[key][1] -= 1
        if _held[key][1] == 0:
            del _held[key]
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the only descriptor releases the flock


def is_held(run_path: Path) -> bool:
    """Whether this process holds the lock of ``run_path``."""
    return os.path.realpath(run_path) in _held
