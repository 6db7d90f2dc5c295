"""The index directory's single-writer lock (search.file_lock on the directory's ``LOCK``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ...file_lock import Locked, file_lock
from .errors import IndexLocked
from .files import PathLike

#: ``flock(2)`` target of :func:`writer_lock`; never deleted.
LOCK_NAME = "LOCK"


@contextlib.contextmanager
def writer_lock(directory: PathLike, *, blocking: bool = True) -> Iterator[None]:
    """Hold the directory's exclusive writer lock for the block (creating the directory).

    With ``blocking=False`` raises :class:`IndexLocked` at once if another holder has it; with
    ``blocking=True`` waits. Re-entrant within one thread, so :func:`write_generation` (which
    takes the lock itself) can run inside a block that already holds it.
    """
    held = contextlib.ExitStack()
    try:
        held.enter_context(file_lock(Path(directory) / LOCK_NAME, blocking=blocking))
    except Locked as exc:
        raise IndexLocked(f"index writer lock in {directory} is held") from exc
    with held:
        yield
