"""The admin index status page: its JSON (polled by the page) and its actions."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from gallery.models import Image
from search import pipeline, rebuild
from tests.factories import create_images

pytestmark = pytest.mark.django_db

STATUS = "/admin/search/indexstate/status/"


def test_the_status_json_reports_counts_generation_and_whether_behind(staff_client):
    ids = create_images([(1, ["a"]), (2, ["b"]), (3, ["c"])])
    data = staff_client.get(STATUS.replace("status/", "status.json")).json()
    assert data["counts"] == {"pending": 3, "ready": 0, "failed": 0}
    assert (data["generation"], data["behind"]) == (None, False)  # nothing ready: nothing to index

    pipeline.images_embed(image_ids=ids[:2])
    data = staff_client.get(STATUS.replace("status/", "status.json")).json()
    assert data["counts"]["ready"] == 2
    assert data["behind"] is True

    rebuild.index_rebuild()
    data = staff_client.get(STATUS.replace("status/", "status.json")).json()
    assert (data["generation"], data["vectors"], data["dimension"], data["behind"]) == (1, 2, 64, False)
    assert data["size_bytes"] > 0


def test_the_status_page_updates_itself_and_confirms_costly_actions(staff_client):
    html = staff_client.get(STATUS).content.decode()
    assert 'data-url="/admin/search/indexstate/status.json"' in html
    assert "js/admin-status.js" in html
    buttons = {
        re.search(r'value="(\w+)"', tag)[1]: tag
        for tag in re.findall(r'<button [^>]*name="action"[^>]*>', html)
    }
    assert set(buttons) == {"embed_missing", "retry_failed", "rebuild", "reembed_all"}
    assert {action for action, tag in buttons.items() if "data-confirm=" in tag} == {"rebuild", "reembed_all"}


def test_retry_failed_puts_failed_images_back_in_the_queue(staff_client):
    ids = create_images([(1, ["a"]), (2, ["b"])])
    Image.objects.filter(pk=ids[0]).update(status="failed", failure_reason="x")
    response = staff_client.post(STATUS, {"action": "retry_failed"}, follow=True)
    assert b"1 failed image(s) queued again." in response.content
    assert Image.objects.get(pk=ids[0]).status == "pending"


def test_the_status_json_is_for_staff_only():
    response = Client().get(STATUS.replace("status/", "status.json"))
    assert response.status_code == 302
