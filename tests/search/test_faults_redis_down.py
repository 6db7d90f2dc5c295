"""Fault: the broker (Redis) dies or hangs while staff upload. Uploads still succeed and say
that embedding is delayed; when Redis is back, the periodic sweep (Celery beat, embedded in
the worker as ./run starts it) enqueues every image left pending and they become searchable.

The test runs its own redis-server on a free port (``private_redis``): the shared one is never
stopped.
"""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from gallery.models import Image
from search import index as search_index
from tests.conftest import wait_for
from tests.support.images import image_bytes

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

UPLOAD_URL = "/admin/gallery/image/upload/"
DELAYED = "Embedding is delayed"


def _upload(client, seeds: list[int], label: str):
    files = [SimpleUploadedFile(f"{label}{s}.png", image_bytes(s), "image/png") for s in seeds]
    return client.post(UPLOAD_URL, {"files": files, "labels": label})


def _upload_bounded(client, seeds: list[int], label: str, bound: float = 60):
    """The upload, run in a thread so that a hang is a failure with a message, not a stuck run."""
    box: dict[str, object] = {}
    thread = threading.Thread(target=lambda: box.setdefault("response", _upload(client, seeds, label)))
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), f"the upload hung for {bound}s while the broker was unreachable"
    return box["response"]


def test_uploads_while_redis_is_down_or_hung_succeed_and_are_indexed_when_it_returns(
    private_redis, start_worker, staff_client, tmp_path
):
    start_worker(
        "--pool",
        "solo",
        "--beat",
        "-s",
        str(tmp_path / "beat-schedule"),
        env_overrides={"CELERY_BROKER_URL": private_redis.url, "IMAGESEARCH_SWEEP_INTERVAL": "1"},
    )

    # Redis crashes: the upload is stored and says embedding is delayed.
    private_redis.stop()
    response = _upload_bounded(staff_client, [1, 2], "lighthouse")
    assert response.status_code == 200
    assert DELAYED in response.content.decode()

    # Redis is back but hung (accepts connections, never answers): the same, within the socket
    # timeout of the settings instead of forever.
    private_redis.start()
    private_redis.pause()
    response = _upload_bounded(staff_client, [3], "lighthouse")
    assert response.status_code == 200
    assert DELAYED in response.content.decode()

    images = list(Image.objects.all())
    assert len(images) == 3
    assert {i.status for i in images} == {Image.Status.PENDING}
    assert all(i.queued_at is None for i in images)  # never reached the broker
    for image in images:  # nothing lost: both files are stored
        assert image.file.storage.exists(image.file.name)
        assert image.thumbnail.storage.exists(image.thumbnail.name)

    # Redis answers again: the worker reconnects, beat's sweep enqueues the pending images.
    private_redis.resume()
    ids = [i.pk for i in images]
    wait_for(
        lambda: Image.objects.filter(pk__in=ids, status="ready").count() == 3,
        timeout=90,
        what="the images uploaded while Redis was down to become ready",
    )

    def indexed() -> bool:
        manifest = search_index.read_current_manifest(settings.INDEX_DIR)
        newest = max(i.hybrid_updated_at.timestamp() for i in Image.objects.filter(pk__in=ids))
        return manifest is not None and manifest.created_at >= newest

    wait_for(indexed, timeout=60, what="an index generation holding them")
    page = staff_client.get("/", {"q": "lighthouse"})
    assert page.status_code == 200
    assert set(ids) <= {hit.image.pk for hit in page.context["page"].hits}
