"""Model work in a web process takes a slot from a small pool: query encodes (text and image)
and query-image decodes. The pool is sized from the cores (IMAGESEARCH_MODEL_SLOTS, or the cores
shared among the web processes), so that a flood of queries never runs more model work at once
than the cores can do, whoever sends it.

When no slot frees within IMAGESEARCH_MODEL_SLOT_WAIT seconds the query is refused at once with
:class:`ModelBusy` (a 503 with Retry-After and a sentence): never an unbounded queue, never a
request that sits in a thread until it times out. A query whose vector is cached needs no slot.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from django.conf import settings

from ..errors import SearchUnavailable

RETRY_AFTER = 2  # seconds: a slot frees within a few encodes

_lock = threading.Lock()
_pool: threading.BoundedSemaphore | None = None
_size = 0
_web_processes = 1


class ModelBusy(SearchUnavailable):
    """Every model slot of this process stayed busy for the whole wait."""

    def __init__(self, message: str, *, retry_after: int = RETRY_AFTER):
        super().__init__(message)
        self.retry_after = retry_after


def set_web_processes(count: int) -> None:
    """Record how many web processes share the cores (gunicorn's post_fork, imagesearch)."""
    global _web_processes
    _web_processes = max(1, int(count))
    reset()


def size() -> int:
    """Slots of this process: the setting, or the cores divided among the web processes."""
    configured = settings.IMAGESEARCH_MODEL_SLOTS
    if configured:
        return configured
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // _web_processes)


def _semaphore() -> threading.BoundedSemaphore:
    global _pool, _size
    with _lock:
        wanted = size()
        if _pool is None or _size != wanted:
            _pool, _size = threading.BoundedSemaphore(wanted), wanted
        return _pool


def busy() -> ModelBusy:
    """The refusal of model work that found no slot free within its wait."""
    return ModelBusy(
        "Search is busy right now: every search this server runs at once is taken. "
        f"Try again in {RETRY_AFTER} seconds."
    )


@contextlib.contextmanager
def model_slot(*, wait: float | None = None) -> Iterator[None]:
    """Hold one slot for the model work in the block, or raise :class:`ModelBusy` when none
    frees within ``wait`` seconds (by default IMAGESEARCH_MODEL_SLOT_WAIT)."""
    pool = _semaphore()
    if not pool.acquire(timeout=settings.IMAGESEARCH_MODEL_SLOT_WAIT if wait is None else max(0.0, wait)):
        raise busy()
    try:
        yield
    finally:
        pool.release()


def reset() -> None:
    """A fresh pool on next use (tests, or after the settings changed)."""
    global _pool
    with _lock:
        _pool = None
