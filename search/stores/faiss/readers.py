"""One :class:`~search.stores.faiss.reader.IndexReader` per index directory and process, shared by
every request, and what a fork leaves them (the locks and loader threads a child must remake)."""

from __future__ import annotations

import os
import threading

from .files import PathLike
from .reader import IndexReader

_readers: dict[str, IndexReader] = {}
_readers_lock = threading.Lock()


def get_reader(
    directory: PathLike,
    expected_model: str | None = None,
    expected_dim: int | None = None,
) -> IndexReader:
    """The process-wide reader for ``directory`` (created on first call).

    A call with other expectations than the cached reader's replaces it.
    """
    key = os.path.realpath(directory)
    with _readers_lock:
        reader = _readers.get(key)
        if reader is None or (reader.expected_model, reader.expected_dim) != (expected_model, expected_dim):
            reader = IndexReader(key, expected_model=expected_model, expected_dim=expected_dim)
            _readers[key] = reader
        return reader


def reset_readers() -> None:
    """Forget every cached reader (tests)."""
    with _readers_lock:
        readers = list(_readers.values())
        _readers.clear()
    for reader in readers:
        reader.close()


def _after_fork_in_child() -> None:
    # Locks and loader threads do not survive fork(); the generations readers loaded do, and a
    # child keeps serving them (a web server forks its workers after mapping the index, so that
    # they share it).
    global _readers_lock
    _readers_lock = threading.Lock()
    for reader in _readers.values():
        reader._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
