"""The one file lock every process uses: the FAISS directory's single writer, the near-duplicate
scan and labelling pass, and a task's one run per delivery (search.tasks).

An ``flock(2)`` on a file: exclusive across processes and threads (each acquisition opens its own
file description), re-entrant within one thread, and dropped by the kernel when the process dies,
so a crashed holder never leaves it held. Knows nothing of Django.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path


class Locked(Exception):
    """Another holder has the lock (raised at once by a non-blocking acquisition)."""


# (lock file, thread) -> how deep that thread holds the lock: makes file_lock re-entrant.
_held_locks: dict[tuple[str, int], int] = {}
_held_locks_guard = threading.Lock()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, blocking: bool = True, remove: bool = False) -> Iterator[None]:
    """Hold the exclusive lock on file ``path`` (created with its folder) for the block.

    With ``blocking=False`` raises :class:`Locked` at once if another holder has it; with
    ``blocking=True`` waits. ``remove``: unlink the file when the block ends, before unlocking,
    so a lock named after something short-lived (a task id) leaves no file behind; a holder that
    opens the name later gets a fresh file and runs after this one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = (os.path.realpath(path), threading.get_ident())
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

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise Locked(f"{path} is held") from exc
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
            if remove:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
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
