"""Model work takes a slot from a small per-process pool: a query that finds none free within
the short wait is refused at once (503, Retry-After, a sentence) on the page and in JSON;
a query whose vector is cached needs none; a slot is given back whatever the query's outcome."""

from __future__ import annotations

import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from search.query import slots
from tests.support.images import image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_slot(settings):
    settings.IMAGESEARCH_MODEL_SLOTS = 1
    settings.IMAGESEARCH_MODEL_SLOT_WAIT = 0.05
    slots.reset()
    yield
    slots.reset()


def test_a_text_query_with_no_free_slot_is_a_503_with_retry_after_on_page_and_api(library, client, one_slot):
    with slots.model_slot():  # another request's model work, for as long as it lasts
        page = client.get("/", {"q": "a fresh query"})
        api = client.get("/api/search", {"text": "another fresh query"})
    assert page.status_code == 503
    assert page["Retry-After"] == str(slots.RETRY_AFTER)
    assert "Search is busy right now" in page.context["error"]
    assert api.status_code == 503 and api["Retry-After"] == str(slots.RETRY_AFTER)
    assert api.json()["error"].startswith("Search is busy right now")
    assert client.get("/", {"q": "a fresh query"}).status_code == 200  # the slot is free again


def test_a_cached_text_query_needs_no_slot(library, client, one_slot):
    assert client.get("/", {"q": "zebra"}).status_code == 200  # encoded once, cached
    with slots.model_slot():
        assert client.get("/", {"q": "zebra"}).status_code == 200
        assert client.get("/api/search", {"text": "zebra"}).status_code == 200


def test_an_image_query_needs_a_slot_unless_the_same_picture_was_just_searched(library, client, one_slot):
    picture = image_bytes(3, "PNG")
    with slots.model_slot():
        busy = client.post("/", {"image": SimpleUploadedFile("q.png", picture)})
    assert busy.status_code == 503 and busy["Retry-After"]
    assert client.post("/", {"image": SimpleUploadedFile("q.png", picture)}).status_code == 200
    with slots.model_slot():  # the same picture again: its vector is remembered
        assert client.post("/", {"image": SimpleUploadedFile("q.png", picture)}).status_code == 200
        assert client.post("/api/search", {"image": SimpleUploadedFile("q.png", picture)}).status_code == 200


def test_a_refused_image_gives_its_slot_back(library, client, one_slot):
    tiff = SimpleUploadedFile("q.tiff", image_bytes(4, "TIFF"))
    assert client.post("/", {"image": tiff}).status_code == 400
    assert client.get("/", {"q": "yet another query"}).status_code == 200


def test_the_pool_is_sized_from_the_cores_shared_by_the_web_processes(settings):
    settings.IMAGESEARCH_MODEL_SLOTS = 0
    cores = len(os.sched_getaffinity(0))
    try:
        slots.set_web_processes(1)
        assert slots.size() == cores
        slots.set_web_processes(cores * 4)
        assert slots.size() == 1
        settings.IMAGESEARCH_MODEL_SLOTS = 3
        assert slots.size() == 3
    finally:
        slots.set_web_processes(1)
