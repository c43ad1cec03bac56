"""Writing a file or a folder all at once: into a temporary name beside it, synced, then renamed
into place. A reader sees the old version or the new one, never half of one; a crash leaves only
the temporary, ``.<name>.tmp-<pid>``, which nothing trusts.

The one pair of helpers every writer in azr goes through (stages, checkpoints, the run's creation,
metrics, the seed file, reports, exports, model caches), so every write syncs the same way.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def temp_name(path: Path, kind: str = "tmp") -> Path:
    """``.<name>.<kind>-<pid>`` beside ``path``."""
    return path.parent / f".{path.name}.{kind}-{os.getpid()}"


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            _fsync_file(Path(root) / name)
        fsync_dir(Path(root))


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, synced."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_folder(path: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder to fill; on success it becomes ``path``, synced.

    ``path`` must not exist (or be an empty folder) unless ``replace``: then the new folder and
    the old one trade places in one step (renameat2 RENAME_EXCHANGE, so a reader never finds the
    folder missing) and the old one is removed. FileExistsError when
    ``path`` holds something and ``replace`` is False (another writer may have made it meanwhile).
    """
    path = Path(path)
    tmp = temp_name(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        _fsync_tree(tmp)
        if replace and path.exists():
            if _exchange(tmp, path):  # one step: readers see the old folder or the new one
                shutil.rmtree(tmp, ignore_errors=True)
            else:  # no renameat2 here: a moment without the folder, between two renames
                old = temp_name(path, "old")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, path)  # onto a missing or empty folder
            except OSError as e:
                raise FileExistsError(f"{path} exists and is not empty") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(path.parent)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2: list[Any] = []  # the libc function, looked up once ([None] when there is none)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 with RENAME_EXCHANGE); False where the libc or
    the filesystem cannot, so the caller falls back to two renames."""
    if not _renameat2:
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            _renameat2.append(fn)
        except (OSError, AttributeError, ImportError):
            _renameat2.append(None)
    fn = _renameat2[0]
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def remove_stale(folder: Path, stem: str) -> None:
    """Remove the ``<stem>.tmp-*`` and ``<stem>.old-*`` leftovers in ``folder`` (``stem`` may be a
    glob). Call it only when no live process can own them (under the run lock)."""
    for pattern in (f"{stem}.tmp-*", f"{stem}.old-*"):
        for stale in folder.glob(pattern):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
