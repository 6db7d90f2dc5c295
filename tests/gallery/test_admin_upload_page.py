"""The admin upload page: the script's JSON answer and the batch status it then follows."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from gallery.models import Image
from search.ingest import pipeline
from tests.support.constants import UPLOAD_URL
from tests.support.images import image_bytes, zip_bytes

pytestmark = pytest.mark.django_db


def _post_json(client, data):
    return client.post(UPLOAD_URL, data, HTTP_ACCEPT="application/json")


def test_an_upload_sent_by_the_page_script_answers_json_and_a_batch_to_follow(staff_client):
    archive = zip_bytes({"cats/a.png": image_bytes(1), "dogs/b.png": image_bytes(2), "bad/c.png": b"nope"})
    response = _post_json(
        staff_client,
        {
            "files": [SimpleUploadedFile("x.png", image_bytes(3), "image/png")],
            "archive": SimpleUploadedFile("p.zip", archive, "application/zip"),
            "labels": "pets",
            "labels_from_dirs": "on",
        },
    )
    assert response.status_code == 200
    data = response.json()
    assert len(data["added"]) == 3  # the files first, then the archive's entries
    assert [r["name"] for r in data["refused"]] == ["c.png"]
    assert data["summary"] == "3 added, 0 skipped as duplicates, 1 refused"

    status = staff_client.get(data["status_url"]).json()
    assert (status["total"], status["pending"], status["ready"], status["done"]) == (3, 3, 0, False)

    pipeline.images_embed(image_ids=data["added"][:2])
    Image.objects.filter(pk=data["added"][2]).update(status="failed", failure_reason="broken file")
    status = staff_client.get(data["status_url"]).json()
    assert (status["pending"], status["ready"], status["failed"], status["done"]) == (0, 2, 1, True)
    assert status["failures"] == [{"id": data["added"][2], "name": "b.png", "reason": "broken file"}]


def test_a_duplicate_upload_is_reported_and_its_batch_is_done_at_once(staff_client):
    files = {"files": [SimpleUploadedFile("x.png", image_bytes(3), "image/png")], "labels": "pets"}
    first = _post_json(staff_client, files).json()
    files["files"] = [SimpleUploadedFile("again.png", image_bytes(3), "image/png")]
    second = _post_json(staff_client, files).json()
    assert second["added"] == []
    assert second["duplicates"] == [{"name": "again.png", "id": first["added"][0]}]
    assert staff_client.get(second["status_url"]).json()["done"] is True


def test_an_invalid_upload_answers_400_json_with_the_reason_and_stores_nothing(staff_client):
    response = _post_json(staff_client, {"files": [SimpleUploadedFile("x.png", image_bytes(3), "image/png")]})
    assert response.status_code == 400
    assert "Give at least one label" in response.json()["error"]
    response = _post_json(
        staff_client,
        {"archive": SimpleUploadedFile("p.zip", b"not a zip", "application/zip"), "labels": "x"},
    )
    assert response.status_code == 400
    assert "archive cannot be read" in response.json()["errors"]["archive"][0]
    assert not Image.objects.exists()


def test_the_html_result_page_follows_the_batch_too(staff_client):
    response = staff_client.post(
        UPLOAD_URL, {"files": [SimpleUploadedFile("x.png", image_bytes(3), "image/png")], "labels": "pets"}
    )
    assert response.status_code == 200
    assert response.context["status_url"].startswith(UPLOAD_URL + "status/")
    assert f'data-url="{response.context["status_url"]}"'.encode() in response.content
    assert b"js/admin-upload.js" in response.content


def test_an_unknown_batch_is_a_404_json(staff_client):
    response = staff_client.get(UPLOAD_URL + "status/" + "0" * 32 + "/")
    assert response.status_code == 404
    assert response.json() == {"error": "Unknown or expired upload batch."}


def test_batch_status_is_for_staff_only(staff_client):
    data = _post_json(
        staff_client, {"files": [SimpleUploadedFile("x.png", image_bytes(3), "image/png")], "labels": "a"}
    ).json()
    response = Client().get(data["status_url"])
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
