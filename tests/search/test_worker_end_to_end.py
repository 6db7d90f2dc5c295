"""Upload through the admin, let a real Celery worker embed and index, search through the page."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from gallery.models import Image
from search.stores import faiss as search_index
from tests.support.constants import UPLOAD_URL
from tests.support.images import image_bytes, zip_bytes
from tests.support.waiting import wait_until_indexed

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_admin_upload_is_embedded_by_the_worker_and_found_by_text_and_image(redis_worker, staff_client):
    files = [SimpleUploadedFile(f"bike{i}.png", image_bytes(i), "image/png") for i in (1, 2)]
    archive = zip_bytes({"sunset/a.png": image_bytes(3), "sunset/b.jpg": image_bytes(4, "JPEG")})
    response = staff_client.post(UPLOAD_URL, {"files": files, "labels": "bicycle"})
    assert response.status_code == 200, response.content[:2000]
    response = staff_client.post(
        UPLOAD_URL,
        {"archive": SimpleUploadedFile("photos.zip", archive, "application/zip"), "labels_from_dirs": "on"},
    )
    assert response.status_code == 200
    ids = list(Image.objects.values_list("pk", flat=True))
    assert len(ids) == 4
    wait_until_indexed(ids)

    page = staff_client.get("/", {"q": "sunset"})
    assert page.status_code == 200
    hits = page.context["page"].hits
    assert {h.image.label_names[0] for h in hits[:2]} == {"sunset"}

    bike = Image.objects.filter(labels__name="bicycle").order_by("pk").first()
    page = staff_client.post("/", {"image": SimpleUploadedFile("q.png", image_bytes(1), "image/png")})
    assert page.status_code == 200
    top = page.context["page"].hits[0]
    assert top.image.pk == bike.pk
    # the results page links "more like this" for each hit
    assert f'?like={bike.pk}"'.encode() in page.content


def test_worker_recovers_from_a_bulk_upload_with_coalesced_rebuilds(redis_worker, staff_client):
    files = [
        SimpleUploadedFile(f"z{i}.png", image_bytes(100 + i, size=(40, 30)), "image/png") for i in range(40)
    ]
    # The worker starts from an empty index and is idle (its start-up sweep done): every
    # generation from here on is a rebuild this upload asked for.
    assert search_index.read_current_manifest(settings.INDEX_DIR) is None
    response = staff_client.post(UPLOAD_URL, {"files": files, "labels": "zebra"})
    assert response.status_code == 200
    ids = list(Image.objects.values_list("pk", flat=True))
    assert len(ids) == 40
    wait_until_indexed(ids)
    rebuilds = search_index.read_current_manifest(settings.INDEX_DIR).generation
    # 40 images in batches of 16 -> 3 embedding tasks, each asking for a rebuild; requests
    # coalesce, so there are at most as many rebuilds as requests
    assert 1 <= rebuilds <= 3, rebuilds
