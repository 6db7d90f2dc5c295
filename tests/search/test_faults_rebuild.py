"""Faults around index rebuilds run by real workers: two rebuilds at once, a worker killed in
the middle of one, images deleted and relabelled while one runs.

A rebuild is caught in the middle deterministically: the test holds the index bookkeeping row
(``IndexState``; on SQLite the database's write lock) so that a worker that has taken the
writer lock stalls on its first write, holding the writer lock, until the test lets go. Each
test runs against a redis-server of its own, so tasks left by other tests never interfere.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.db import transaction

from gallery import services as gallery_services
from gallery.models import Image
from search import encoder, tasks
from search.models import IndexState
from search.query import ranking
from search.stores import faiss as search_index
from tests.factories import create_indexed_images
from tests.support.processes import children
from tests.support.waiting import wait_for
from tests.support.workers import clear_shared_index, sweeps_done, wait_for_start_up_sweep

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

_REBUILT = re.compile(r"Task search\.tasks\.rebuild_index\[[0-9a-f-]+\] succeeded in [0-9.e-]+s: (\{.*\})")


def _library(redis, specs: list[tuple[int, list[str]]]) -> list[int]:
    """Images embedded and indexed by this process into an empty shared index, before any
    worker starts; the tasks their upload enqueued are dropped, so that workers start idle."""
    clear_shared_index()
    ids = create_indexed_images(specs)
    redis.flush()
    return ids


def _start(start_worker, redis, *args: str):
    # --concurrency 1: a worker reserves one message at a time, so two tasks go to two workers.
    return start_worker(*args, "--concurrency", "1", broker=redis.url)


def _start_swept(start_worker, redis, *args: str):
    """A worker past its start-up sweep, which also calibrates a library never calibrated: a
    write that a stalled rebuild would hold up, keeping the worker from the rebuild."""
    return wait_for_start_up_sweep(_start(start_worker, redis, *args))


@contextlib.contextmanager
def _rebuilds_stalled() -> Iterator[None]:
    """Hold ``IndexState``: a rebuild that has the writer lock stalls on its first write."""
    IndexState.get()
    with transaction.atomic():
        IndexState.objects.select_for_update().get()
        yield


def _writer_pid() -> int | None:
    try:
        text = (Path(settings.INDEX_DIR) / search_index.lock.LOCK_NAME).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _rebuild_reports(*workers) -> list[dict]:
    return [ast.literal_eval(m.group(1)) for w in workers for m in _REBUILT.finditer(w.log_path.read_text())]


def _indexed_ids() -> set[int]:
    reader = search_index.IndexReader(settings.INDEX_DIR, expected_model=encoder.model_name())
    reader.refresh()
    query = np.zeros(reader.manifest.dim, dtype=np.float32)
    query[0] = 1.0
    _, ids = reader.search(query, reader.manifest.count + 1)
    return {int(i) for i in ids[0] if i >= 0}


def _assert_index_equals_the_database() -> None:
    manifest = search_index.read_current_manifest(settings.INDEX_DIR)
    searchable = set(Image.objects.searchable(encoder.model_name()).values_list("pk", flat=True))
    assert manifest.count == len(searchable)
    assert _indexed_ids() == searchable


def test_two_workers_rebuilding_at_once_one_writes_the_other_backs_off(private_redis, start_worker):
    _library(private_redis, [(1, ["sunset"]), (2, ["bicycle"]), (3, ["zebra"])])
    workers = [_start(start_worker, private_redis, "--pool", "solo") for _ in range(2)]
    # Both start-up sweeps first (either worker may run either): a sweep taken after the
    # rebuilds would keep its worker from backing off while the writer waits on the database
    # lock, and a wait longer than SQLite's busy timeout fails the writer.
    wait_for(lambda: sweeps_done(*workers) >= 2, what="both start-up sweeps")

    with _rebuilds_stalled():
        tasks.rebuild_index.apply_async()
        tasks.rebuild_index.apply_async()
        pids = {w.proc.pid for w in workers}
        winner = wait_for(lambda: _writer_pid() in pids and _writer_pid(), what="one worker writing")
        loser = next(w for w in workers if w.proc.pid != winner)
        wait_for(lambda: "backing off" in loser.log_path.read_text(), what="the other backing off")

    try:
        wait_for(lambda: len(_rebuild_reports(*workers)) == 2, what="both rebuild tasks to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(w.log_tail() for w in workers)) from None
    built = sorted(report["built"] for report in _rebuild_reports(*workers))
    assert built == [False, True]
    _assert_index_equals_the_database()


def test_worker_killed_mid_rebuild_the_old_generation_serves_and_the_rebuild_runs_again(
    private_redis, start_worker, client
):
    _library(private_redis, [(1, ["sunset"]), (2, ["bicycle"]), (3, ["zebra"])])
    served = search_index.read_current_manifest(settings.INDEX_DIR).generation
    worker = _start_swept(start_worker, private_redis, "--pool", "prefork")

    with _rebuilds_stalled():
        tasks.rebuild_index.apply_async()
        writer = wait_for(
            lambda: _writer_pid() in children(worker.proc.pid) and _writer_pid(),
            what="the pool process writing",
        )
        os.kill(writer, signal.SIGKILL)  # in the middle of the rebuild, holding the writer lock
        page = client.get("/", {"q": "sunset"})
        assert page.context["page"].generation == served  # the previous generation serves

    # reject_on_worker_lost: the rebuild runs again in a fresh pool process and succeeds.
    wait_for(
        lambda: search_index.read_current_manifest(settings.INDEX_DIR).generation > served,
        what="the rebuild run again",
    )
    wait_for(lambda: _rebuild_reports(worker), what="the rebuild task's report")
    assert [report["built"] for report in _rebuild_reports(worker)] == [True]
    assert "WorkerLostError" in worker.log_path.read_text()
    assert not any(p.name.startswith(".tmp-") for p in Path(settings.INDEX_DIR).iterdir())
    _assert_index_equals_the_database()


def test_delete_and_relabel_during_a_rebuild(private_redis, start_worker, client):
    gone, relabelled, other = _library(private_redis, [(1, ["sunset"]), (2, ["sunset"]), (3, ["zebra"])])
    before = Image.objects.get(pk=relabelled).hybrid_updated_at
    worker = _start_swept(start_worker, private_redis, "--pool", "solo")

    with _rebuilds_stalled():
        tasks.rebuild_index.apply_async()
        wait_for(lambda: _writer_pid() == worker.proc.pid, what="the worker rebuilding")
        gallery_services.images_delete(images=[Image.objects.get(pk=gone)])
        gallery_services.image_relabel(image=Image.objects.get(pk=relabelled), names=["lighthouse"])
        # The index still holds the deleted image; results never show it.
        hits = client.get("/", {"q": "sunset"}).context["page"].hits
        assert gone not in {hit.image.pk for hit in hits}

    # The relabel's new hybrid reaches the index by the next rebuild.
    def new_hybrid_indexed() -> bool:
        updated = Image.objects.get(pk=relabelled).hybrid_updated_at
        manifest = search_index.read_current_manifest(settings.INDEX_DIR)
        return updated > before and manifest.created_at > updated.timestamp()

    wait_for(new_hybrid_indexed, what="the relabelled image's new hybrid in an index generation")
    hybrid = encoder.from_bytes(Image.objects.get(pk=relabelled).hybrid_vector)
    search_index.get_reader(settings.INDEX_DIR, expected_model=encoder.model_name()).refresh()
    page = ranking.images_search(vector=hybrid, page_size=3)
    assert page.hits[0].image.pk == relabelled and page.hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert gone not in {hit.image.pk for hit in page.hits}
    assert gone not in _indexed_ids()
    assert {relabelled, other} <= _indexed_ids()
    hits = client.get("/", {"q": "lighthouse"}).context["page"].hits
    assert hits[0].image.pk == relabelled
