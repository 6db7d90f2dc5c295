"""Fault: the broker (Redis) dies while the worker embeds, and is down or hung while staff
upload. The worker survives; uploads still succeed and say that embedding is delayed; when
Redis is back, the periodic sweep (Celery beat, embedded in the worker as ./run starts it)
enqueues every image left pending and they all become searchable.

The test runs its own redis-server on a free port (``private_redis``): the shared one is never
stopped.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.db.models import F

from gallery.models import Image
from tests.support.constants import PREFORK_ONE, UPLOAD_URL
from tests.support.images import image_bytes
from tests.support.waiting import wait_for, wait_until_indexed
from tests.support.workers import clear_shared_index, pool_process_running_an_embedding, rows_held

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

DELAYED = "Embedding is delayed"


def _worker_with_beat(start_worker, redis, tmp_path, **constants: float):
    """From an empty index, a worker as ./run starts it (prefork, beat's periodic sweep embedded),
    sweeping every second, on the test's own Redis."""
    clear_shared_index()
    return start_worker(
        *PREFORK_ONE,
        "--beat",
        "-s",
        str(tmp_path / "beat-schedule"),
        broker=redis.url,
        constants={"imagesearch.settings:SWEEP_INTERVAL": 1.0, **constants},
    )


def _upload(client, seeds: list[int], label: str):
    files = [SimpleUploadedFile(f"{label}{s}.png", image_bytes(s), "image/png") for s in seeds]
    return client.post(UPLOAD_URL, {"files": files, "labels": label})


def _upload_bounded(client, seeds: list[int], label: str, bound: float = 60):
    """The upload, run in a thread so that a hang is a failure with a message, not a stuck run."""
    box: dict[str, object] = {}

    def upload() -> None:
        try:
            box["response"] = _upload(client, seeds, label)
        finally:
            connections.close_all()  # this thread's own database connection

    thread = threading.Thread(target=upload)
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), f"the upload hung for {bound}s while the broker was unreachable"
    return box["response"]


def test_redis_dies_mid_task_and_uploads_while_it_is_down_or_hung_are_indexed_when_it_returns(
    private_redis, start_worker, staff_client, tmp_path
):
    response = _upload_bounded(staff_client, [1, 2], "lighthouse")
    assert response.status_code == 200 and DELAYED not in response.content.decode()
    first = list(Image.objects.values_list("pk", flat=True))

    # Redis crashes while the worker embeds them (its message unacknowledged): the worker
    # survives the lost connection and finishes the task. The rows are held before the worker
    # starts: an embedding takes milliseconds, and one that finished first would leave no task
    # to interrupt.
    with rows_held(first):
        worker = _worker_with_beat(start_worker, private_redis, tmp_path)
        wait_for(
            lambda: pool_process_running_an_embedding(worker.proc.pid),
            timeout=60,
            what="the worker embedding the first upload",
        )
        private_redis.stop()

    # Uploads while it is down are stored and say that embedding is delayed.
    response = _upload_bounded(staff_client, [3, 4], "lighthouse")
    assert response.status_code == 200
    assert DELAYED in response.content.decode()

    # Redis is back but hung (accepts connections, never answers): the same, within the socket
    # timeout of the settings instead of forever.
    private_redis.start()
    private_redis.pause()
    response = _upload_bounded(staff_client, [5], "lighthouse")
    assert response.status_code == 200
    assert DELAYED in response.content.decode()

    delayed = list(Image.objects.exclude(pk__in=first))
    assert len(delayed) == 3
    assert {i.status for i in delayed} == {Image.Status.PENDING}
    assert all(i.queued_at is None for i in delayed)  # never reached the broker
    for image in Image.objects.all():  # nothing lost: both files are stored
        assert image.file.storage.exists(image.file.name)
        assert image.thumbnail.storage.exists(image.thumbnail.name)

    # Redis answers again: the worker reconnects, beat's sweep enqueues the pending images.
    private_redis.resume()
    ids = list(Image.objects.values_list("pk", flat=True))
    wait_until_indexed(ids)
    page = staff_client.get("/", {"q": "lighthouse"})
    assert page.status_code == 200
    assert set(ids) <= {hit.image.pk for hit in page.context["page"].hits}
    assert worker.proc.poll() is None, "the worker died with the broker"


def test_worker_survives_losing_redis_while_it_holds_a_reserved_countdown_task(
    private_redis, start_worker, monkeypatch
):
    from gallery.services import images_create
    from search import dispatch
    from tests.factories import upload

    clear_shared_index()
    worker = start_worker(*PREFORK_ONE, broker=private_redis.url)
    # A rebuild waits out its countdown in the worker, unacknowledged: celery/kombu 5.7 crashed
    # the whole worker ("Unrecoverable error") when the broker went away at such a moment.
    monkeypatch.setattr(dispatch, "REBUILD_DELAY", 600)
    dispatch.index_rebuild_request()
    reserved = re.compile(r"rebuild_index\[[0-9a-f-]+\] received")
    wait_for(lambda: reserved.search(worker.log_path.read_text()), timeout=30, what="the rebuild reserved")
    private_redis.stop()
    wait_for(
        lambda: "Cannot connect" in worker.log_path.read_text() or worker.proc.poll() is not None,
        timeout=30,
        what="the worker noticing the lost broker",
    )
    assert worker.proc.poll() is None, worker.log_path.read_text()[-3000:]

    private_redis.start()
    result = images_create(uploads=[upload(image_bytes(9), ["heron"])])
    wait_for(
        lambda: Image.objects.filter(pk__in=result.added, status="ready").exists(),
        timeout=60,
        what="an upload after the broker came back to be embedded",
    )


def test_a_relabel_made_while_redis_is_down_is_repaired_by_the_sweep_when_it_returns(
    private_redis, start_worker, tmp_path
):
    from gallery.services import image_relabel, images_create
    from tests.factories import upload

    # A short claim timeout stands for the grace a refresh gets before the sweep re-sends it.
    worker = _worker_with_beat(
        start_worker, private_redis, tmp_path, **{"search.ingest.claims:CLAIM_TIMEOUT": 2}
    )
    [pk] = images_create(uploads=[upload(image_bytes(21), ["lighthouse"])]).added
    wait_until_indexed([pk])
    before = Image.objects.get(pk=pk)

    private_redis.stop()
    image_relabel(image=before, names=["zebra"])  # its refresh cannot reach the broker
    time.sleep(3)  # past the grace, while the broker is still down: nothing can repair it yet
    stale = Image.objects.get(pk=pk)
    assert stale.hybrid_vector == before.hybrid_vector and stale.hybrid_updated_at < stale.labels_changed_at

    private_redis.start()
    repaired = wait_for(
        lambda: Image.objects.filter(pk=pk, hybrid_updated_at__gt=F("labels_changed_at")).first(),
        timeout=60,
        what="the sweep refreshing the stale hybrid",
    )
    assert repaired.hybrid_vector != before.hybrid_vector
    assert repaired.label_names == ["zebra"]
    assert worker.proc.poll() is None
