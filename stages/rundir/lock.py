"""The run lock: one writer per run directory at a time.

Every command that writes a run holds an exclusive ``flock`` on ``<run>/.lock`` for as long as it
writes. The kernel drops the lock when the process dies, however it dies, so a lock is never
stale: a second writer stops at once with one line naming the holder's pid and command, and
whoever holds the lock knows that every temporary folder it finds belongs to a dead process.
Readers (`azr status`, `inspect`, `report`, `eval`) never take it. The lock file is opened without
following a link (O_NOFOLLOW) and accepted only as a regular file with one name, so a `.lock`
planted as a symlink or a hard link never makes a writer truncate another file.

Within one process the lock is re-entrant and shared by every :class:`~stages.rundir.run.Run` object
of the same directory (the loop, a stage and a checkpoint write nest their holds).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from stages.errors import RunError, RunLocked

LOCK_FILE = ".lock"

_held: dict[str, list[int]] = {}  # realpath of the run -> [fd, depth] for this process


_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


def holder(run_path: Path) -> str:
    """Who holds the lock, as written by the holder: ``pid N (command), since T``."""
    try:
        fd = os.open(Path(run_path) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            text = os.read(fd, 1000).decode("utf-8", "replace").strip() if _is_plain(fd) else ""
        finally:
            os.close(fd)
    except OSError:
        text = ""
    return text or "another process (pid not yet written)"


def _is_plain(fd: int) -> bool:
    """A regular file with one name: never a device, a FIFO, or a hard link to another file."""
    st = os.fstat(fd)
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def _open_lock(run_path: Path) -> int:
    """Open (or create) ``<run>/.lock`` without following a link, and only as a regular file of
    its own: a lock file planted as a symlink or a hard link must not make a writer truncate what
    it points to."""
    path = Path(run_path) / LOCK_FILE
    bad = RunError(f"{path} is not a regular file (a symlink, a hard link or a device); "
                   "remove it and rerun (it holds nothing but the writer's pid)")
    try:
        fd = os.open(path, _OPEN_FLAGS, 0o644)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise bad from None
        raise
    if not _is_plain(fd):
        os.close(fd)
        raise bad
    os.set_blocking(fd, True)
    return fd


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
    fd = _open_lock(run_path)
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
