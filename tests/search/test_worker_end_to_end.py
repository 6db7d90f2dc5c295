"""Upload through the admin, let a real Celery worker embed and index, search through the page."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from gallery.models import Image
from search import index as search_index
from tests.conftest import require_service, wait_for
from tests.support import env
from tests.support.images import image_bytes, zip_bytes

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def redis_worker(start_worker, transactional_db):
    require_service(env.redis_available(), "Redis at 127.0.0.1:6379")
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    return start_worker()


def _wait_until_indexed(ids: list[int], timeout: float = 90) -> None:
    wait_for(
        lambda: Image.objects.filter(pk__in=ids, status="ready").count() == len(ids),
        timeout=timeout,
        what=f"images {ids} ready",
    )

    def indexed() -> bool:
        manifest = search_index.read_current_manifest(settings.INDEX_DIR)
        return (
            manifest is not None
            and manifest.count >= Image.objects.ready().count()
            and manifest.created_at
            >= max(i.hybrid_updated_at.timestamp() for i in Image.objects.filter(pk__in=ids))
        )

    wait_for(indexed, timeout=timeout, what="index holds the images")


def test_admin_upload_is_embedded_by_the_worker_and_found_by_text_and_image(redis_worker, staff_client):
    files = [SimpleUploadedFile(f"bike{i}.png", image_bytes(i), "image/png") for i in (1, 2)]
    archive = zip_bytes({"sunset/a.png": image_bytes(3), "sunset/b.jpg": image_bytes(4, "JPEG")})
    response = staff_client.post("/admin/gallery/image/upload/", {"files": files, "labels": "bicycle"})
    assert response.status_code == 200, response.content[:2000]
    response = staff_client.post(
        "/admin/gallery/image/upload/",
        {"archive": SimpleUploadedFile("photos.zip", archive, "application/zip"), "labels_from_dirs": "on"},
    )
    assert response.status_code == 200
    ids = list(Image.objects.values_list("pk", flat=True))
    assert len(ids) == 4
    _wait_until_indexed(ids)

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
    response = staff_client.post("/admin/gallery/image/upload/", {"files": files, "labels": "zebra"})
    assert response.status_code == 200
    ids = list(Image.objects.values_list("pk", flat=True))
    assert len(ids) == 40
    before = search_index.read_current_manifest(settings.INDEX_DIR)
    _wait_until_indexed(ids)
    after = search_index.read_current_manifest(settings.INDEX_DIR)
    rebuilds = after.generation - (before.generation if before else 0)
    # 40 images in batches of 16 -> 3 embedding tasks; rebuild requests coalesce
    assert 1 <= rebuilds <= 3, rebuilds
