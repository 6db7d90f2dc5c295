"""Fault: the worker is killed (SIGKILL: out of memory, a crash, a deploy gone wrong) while it
embeds a batch. Every image of the batch still ends ``ready``, none is run through the model
twice, none is lost, and the index holds each exactly once.

Two ways to die, two recoveries:

* the pool process dies, its parent lives on: ``acks_late`` + ``reject_on_worker_lost`` put
  the message back on the queue at once and a fresh pool process runs it again;
* the whole worker dies: its message stays unacknowledged in Redis until the visibility
  timeout (an hour), so the sweep a worker runs when it starts enqueues the images left
  pending (here with a pending timeout of 1 s instead of 300 s, so the test need not wait).

Each test runs against a redis-server of its own, so no unacknowledged message is left in the
shared one.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from gallery.models import Image
from search import encoder
from search.stores import faiss as search_index
from tests.factories import upload
from tests.support.constants import PREFORK_ONE
from tests.support.images import image_bytes
from tests.support.processes import CeleryWorker
from tests.support.waiting import wait_for, wait_until_indexed
from tests.support.workers import clear_shared_index, pool_process_running_an_embedding, rows_held

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

BATCH = 40  # three embedding tasks of IMAGESEARCH_EMBED_BATCH_SIZE (16)
_SUCCEEDED = re.compile(r"Task search\.tasks\.embed_images\[[0-9a-f-]+\] succeeded in [0-9.e-]+s: (\{.*\})")


def _upload_batch() -> list[int]:
    from gallery.services import images_create

    result = images_create(
        uploads=[upload(image_bytes(500 + i, size=(48, 36)), ["kestrel"], f"k{i}.png") for i in range(BATCH)]
    )
    assert len(result.added) == BATCH and result.queued
    return result.added


@contextlib.contextmanager
def _a_held_batch_and_a_worker(start_worker, redis) -> Iterator[tuple[CeleryWorker, list[int]]]:
    """From an empty index, a batch waiting in the test's own broker, its rows held (see
    tests.support.workers.rows_held), then a prefork worker that takes it: its first embedding
    cannot finish inside the block. Held before the worker starts, since an embedding takes
    milliseconds and one that finished first would leave nothing to kill mid-batch."""
    clear_shared_index()
    ids = _upload_batch()
    with rows_held(ids):
        yield start_worker(*PREFORK_ONE, broker=redis.url), ids


def _running_an_embedding(worker) -> int:
    return wait_for(
        lambda: pool_process_running_an_embedding(worker.proc.pid),
        timeout=60,
        what="the pool process running an embedding task",
    )


def _embedded_counts(*logs: Path) -> list[int]:
    """The ``embedded`` count of every embedding task that finished, from the workers' logs."""
    return [
        ast.literal_eval(m.group(1))["embedded"] for log in logs for m in _SUCCEEDED.finditer(log.read_text())
    ]


def _assert_all_ready_and_indexed_once(ids: list[int]) -> None:
    wait_until_indexed(ids)
    reader = search_index.IndexReader(settings.INDEX_DIR, expected_model=encoder.model_name())
    reader.refresh()
    query = encoder.from_bytes(Image.objects.get(pk=ids[0]).hybrid_vector)
    _, found = reader.search(query, reader.manifest.count + 5)
    found = [int(i) for i in found[0] if i >= 0]
    assert len(found) == len(set(found))  # once each
    assert set(ids) <= set(found)
    assert Image.objects.count() == len(ids)


def test_pool_process_killed_mid_batch_its_task_runs_again_and_every_image_ends_ready_once(
    private_redis, start_worker
):
    with _a_held_batch_and_a_worker(start_worker, private_redis) as (worker, ids):
        os.kill(_running_an_embedding(worker), signal.SIGKILL)

    _assert_all_ready_and_indexed_once(ids)
    log = worker.log_path.read_text()
    assert "WorkerLostError" in log and "SIGKILL" in log  # it died while running the task
    assert sum(_embedded_counts(worker.log_path)) == BATCH  # none through the model twice


def test_whole_worker_killed_mid_batch_the_next_worker_sweeps_and_every_image_ends_ready_once(
    private_redis, start_worker
):
    with _a_held_batch_and_a_worker(start_worker, private_redis) as (first, ids):
        _running_an_embedding(first)
        os.killpg(first.proc.pid, signal.SIGKILL)  # the worker and its pool process, no goodbye
        first.stop()
    assert _embedded_counts(first.log_path) == []
    assert Image.objects.filter(pk__in=ids, status="pending").count() == BATCH

    # Default settings: no shortened timeout. The killed worker's messages stay unacknowledged in
    # Redis for the visibility timeout (an hour); the new worker's start-up sweep hands the
    # images over again at once.
    started = time.monotonic()
    second = start_worker(*PREFORK_ONE, broker=private_redis.url)
    _assert_all_ready_and_indexed_once(ids)
    recovered = time.monotonic() - started
    assert sum(_embedded_counts(first.log_path, second.log_path)) == BATCH
    assert recovered < 60, f"ready {recovered:.0f} s after the new worker started"  # operations.md's bound
    print(f"whole worker killed: every image ready {recovered:.1f} s after a new worker started")
