"""Catching a real worker in the middle of a task, whatever the speed or load of the machine."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import transaction

from gallery.models import Image
from search.stores import faiss as search_index
from tests.support.processes import CeleryWorker, children


@contextlib.contextmanager
def rows_held(ids: list[int]) -> Iterator[None]:
    """Hold these images' rows (row locks on PostgreSQL, the write lock on SQLite) so that a task
    embedding them cannot finish until the block ends: a fault provoked inside the block lands
    mid-task. Keep it short: SQLite writers give up after the settings' 30 s busy timeout."""
    with transaction.atomic():
        list(Image.objects.select_for_update().filter(pk__in=ids).values_list("pk", flat=True))
        yield


def pool_process_running_an_embedding(worker_pid: int) -> int | None:
    """The prefork pool process that has started an embedding task, or None.

    A task run holds its run lock, a file in ``<data dir>/task-locks``, open for its whole
    duration (search.tasks); inside :func:`rows_held` an embedding cannot have finished.
    """
    for child in children(worker_pid):
        try:
            targets = [os.readlink(fd) for fd in Path(f"/proc/{child}/fd").iterdir()]
        except OSError:
            continue
        if any("/task-locks/" in target for target in targets):
            return child
    return None


def clear_shared_index() -> None:
    """Start a worker test from an empty index directory (worker tests share DATA_DIR/index).

    Generations left by earlier tests do not match this test's (empty) database, so a worker's
    sweep at start would schedule a rebuild, and a fault provoked while that rebuild waits out
    its countdown would hit it instead of the task the test aims at. The database is the source
    of truth: deleting the directory loses nothing.
    """
    shutil.rmtree(settings.INDEX_DIR, ignore_errors=True)
    search_index.reset_readers()


_SWEEP_DONE = re.compile(r"Task search\.tasks\.sweep\[[0-9a-f-]+\] (succeeded|raised)")


def sweeps_done(*workers: CeleryWorker) -> int:
    """How many sweeps these workers have finished, together (any worker may run the sweep
    another one sent when it started)."""
    return sum(len(_SWEEP_DONE.findall(w.log_path.read_text(errors="replace"))) for w in workers)


def wait_for_start_up_sweep(worker: CeleryWorker, *, timeout: float = 60) -> CeleryWorker:
    """Until the sweep a worker sends itself when it starts (search.tasks) has run: from then
    on the worker does only what the test hands it. A sweep that raised fails the wait."""

    def done() -> bool:
        found = _SWEEP_DONE.search(worker.log_path.read_text(errors="replace"))
        if found and found[1] == "raised":
            raise RuntimeError(f"the start-up sweep failed:\n{worker.log_tail()}")
        return found is not None

    worker.wait_while_running(done, timeout=timeout, what="the worker's start-up sweep")
    return worker
