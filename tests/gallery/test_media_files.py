"""Stored media: served only while an image row names them, never kept by shared caches when
search is private, and files a failed delete left behind are removed by the media sweep."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.test import Client

from gallery.media import media_orphans_delete
from gallery.models import Image
from search.tasks import sweep_media
from tests.factories import create_images

pytestmark = pytest.mark.django_db


def _orphan_by_a_failed_delete() -> tuple[str, str]:
    """An image whose row is deleted while its files stay, as when the delete after commit fails."""
    [pk] = create_images([(1, ["sunset"])])
    image = Image.objects.get(pk=pk)
    names = (image.file.name, image.thumbnail.name)
    Image.objects.filter(pk=pk).delete()  # the row only: gallery.services deletes files after commit
    assert all(default_storage.exists(name) for name in names)
    return names


def _age(name: str, *, hours: float) -> None:
    past = time.time() - hours * 3600
    os.utime(default_storage.path(name), (past, past))


def test_a_file_whose_row_is_gone_is_not_served():
    file, thumbnail = _orphan_by_a_failed_delete()
    client = Client()
    assert client.get(f"{settings.MEDIA_URL}{file}").status_code == 404
    assert client.get(f"{settings.MEDIA_URL}{thumbnail}").status_code == 404


def test_a_stored_file_of_an_existing_image_is_served():
    [pk] = create_images([(2, ["sunset"])])
    image = Image.objects.get(pk=pk)
    assert Client().get(image.file.url).status_code == 200
    assert Client().get(image.thumbnail.url).status_code == 200


def test_the_media_sweep_removes_old_orphans_and_keeps_files_of_rows_and_young_files():
    old_file, old_thumbnail = _orphan_by_a_failed_delete()
    _age(old_file, hours=2)
    _age(old_thumbnail, hours=2)
    [kept_pk] = create_images([(3, ["zebra"])])
    kept = Image.objects.get(pk=kept_pk)
    _age(kept.file.name, hours=2)
    young = Path(default_storage.path("images/ab/" + "ab" * 32 + ".png"))
    young.parent.mkdir(parents=True, exist_ok=True)
    young.write_bytes(b"an upload in progress")

    assert media_orphans_delete() == 2
    assert not default_storage.exists(old_file) and not default_storage.exists(old_thumbnail)
    assert default_storage.exists(kept.file.name) and default_storage.exists(kept.thumbnail.name)
    assert young.exists()
    assert media_orphans_delete(grace=timedelta(0)) == 1  # the young one, once it is old enough
    assert sweep_media() == 0  # the periodic task: nothing left


def test_media_are_private_to_the_browser_when_search_is_not_public(settings, staff_client):
    [pk] = create_images([(4, ["sunset"])])
    image = Image.objects.get(pk=pk)
    settings.IMAGESEARCH_PUBLIC_SEARCH = False
    response = staff_client.get(image.file.url)
    assert response.status_code == 200
    assert "private" in response["Cache-Control"]
    assert "public" not in response["Cache-Control"]
    settings.IMAGESEARCH_PUBLIC_SEARCH = True
    assert Client().get(image.file.url)["Cache-Control"].startswith("public")
