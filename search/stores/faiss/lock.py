"""The index directory's single-writer lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import IndexLocked
from .files import PathLike

#: ``flock(2)`` target of :func:`writer_lock`; never deleted.
LOCK_NAME = "LOCK"

# (directory, thread) -> how deep that thread holds the lock: makes writer_lock re-entrant.
_held_locks: dict[tuple[str, int], int] = {}
_held_locks_guard = threading.Lock()


@contextlib.contextmanager
def writer_lock(directory: PathLike, *, blocking: bool = True) -> Iterator[None]:
    """Hold the directory's exclusive writer lock (``flock`` on ``LOCK``) for the block.

    Exclusive across processes and across threads (each acquisition opens its own
    file description). With ``blocking=False`` raises :class:`IndexLocked` at once if
    another holder has it; with ``blocking=True`` waits. Re-entrant within one thread,
    so :func:`write_generation` (which takes the lock itself) can run inside a block
    that already holds it. The lock is released when the process dies, so a crashed
    writer never leaves it held. Creates the directory if needed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = (os.path.realpath(directory), threading.get_ident())
    with _held_locks_guard:
        depth = _held_locks.get(key, 0)
        if depth:
            _held_locks[key] = depth + 1
    if depth:
        try:
            yield
        finally:
            with _held_locks_guard:
                _held_locks[key] -= 1
        return

    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise IndexLocked(f"index writer lock in {directory} is held") from exc
            raise
        with contextlib.suppress(OSError):  # holder's pid, for diagnostics only
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        with _held_locks_guard:
            _held_locks[key] = 1
        try:
            yield
        finally:
            with _held_locks_guard:
                del _held_locks[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _after_fork_in_child() -> None:
    # The parent's threads, and the locks they held, do not exist in the child.
    global _held_locks_guard
    _held_locks.clear()
    _held_locks_guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
