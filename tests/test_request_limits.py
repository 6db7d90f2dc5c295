"""Request bodies are refused on Content-Length, per path, before anything reads them: a few MB
for search and every anonymous request, IMAGESEARCH_MAX_REQUEST_BYTES on the staff upload paths
for staff only."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from api.tokens import api_token_create

pytestmark = pytest.mark.django_db

BIG = 64 * 1024 * 1024


class _Untouchable:
    """A body stream that fails the test if anything reads it."""

    def read(self, *args):
        raise AssertionError("the body was read")

    readline = read


def _post(client: Client, path: str, length: int, **extra):
    # A declared length with a body nobody may read: refused before reading, or this fails.
    return client.generic(
        "POST",
        path,
        b"",
        content_type="multipart/form-data; boundary=xyz",
        CONTENT_LENGTH=str(length),
        **{"wsgi.input": _Untouchable(), **extra},
    )


@pytest.mark.parametrize(
    "path",
    ["/", "/api/search", "/knn-service", "/admin/login/", "/admin/gallery/image/upload/", "/api/images"],
)
def test_an_anonymous_64_mb_post_is_refused_unread_on_every_path(path):
    response = _post(Client(), path, BIG)
    assert response.status_code == 413
    assert "the limit is 10.5 MB" in response.content.decode()


def test_a_search_post_within_the_public_limit_goes_through(client, settings):
    image = SimpleUploadedFile("q.tiff", b"II*\0" + b"\0" * 100)
    page = client.post("/", {"image": image})
    assert page.status_code == 400  # read and refused by the view, not by its size


def test_a_staff_session_keeps_the_upload_limit_on_the_upload_paths_only(staff_client):
    limit = 512 * 1024 * 1024
    assert _post(staff_client, "/admin/gallery/image/upload/", BIG).status_code != 413
    assert _post(staff_client, "/admin/gallery/image/upload/", limit + 1).status_code == 413
    assert _post(staff_client, "/", BIG).status_code == 413  # search is search, for staff too


def test_an_api_token_of_staff_keeps_the_upload_limit_on_post_api_images(staff_user):
    _, key = api_token_create(user=staff_user, name="importer")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert _post(client, "/api/images", BIG).status_code != 413
    bad = Client(HTTP_AUTHORIZATION="Bearer isk_not-a-token")
    assert _post(bad, "/api/images", BIG).status_code == 413
