"""GET /api/duplicates: the near-duplicate groups the admin's page shows, for staff only."""

from __future__ import annotations

import pytest
from django.test import Client

from api.tokens import api_token_create
from search.duplicates import scan as duplicates
from tests.support.near_duplicates import TEST_THRESHOLD, near_duplicate_library

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_store")]


@pytest.fixture
def library(settings) -> dict[str, dict[str, int]]:
    settings.IMAGESEARCH_DUPLICATE_THRESHOLD = TEST_THRESHOLD
    return near_duplicate_library()


def _bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def test_staff_get_the_same_groups_as_the_page(library, staff_user):
    _, key = api_token_create(user=staff_user, name="tests")
    response = Client().get("/api/duplicates", **_bearer(key))
    assert response.status_code == 200
    data = response.json()
    expected = [(group.pk, [m.image_id for m in group.members.all()]) for group in duplicates.groups_listed()]
    assert [(g["id"], [i["id"] for i in g["images"]]) for g in data["groups"]] == expected
    assert sorted(sorted(ids) for _, ids in expected) == sorted(
        sorted(ids.values()) for ids in (library["kestrel"], library["harbour"])
    )
    first = data["groups"][0]["images"][0]
    shown = {"labels", "thumbnail_url", "width", "height", "uploaded_at", "file_bytes", "similarity"}
    assert shown <= set(first)
    assert first["file_bytes"] > 0 and first["similarity"] >= TEST_THRESHOLD
    assert (data["scan"]["number"], data["scan"]["groups"], data["scan"]["threshold"]) == (
        1,
        2,
        TEST_THRESHOLD,
    )
    assert data["has_more"] is False

    page = Client().get("/api/duplicates", {"limit": 1, "offset": 1}, **_bearer(key)).json()
    assert [g["id"] for g in page["groups"]] == [expected[1][0]] and page["has_more"] is False
    assert Client().get("/api/duplicates", {"limit": 0}, **_bearer(key)).status_code == 400


def test_a_staff_session_may_read_them_too(library, staff_client):
    assert len(staff_client.get("/api/duplicates").json()["groups"]) == 2


def test_anonymous_callers_and_non_staff_are_refused(library, client, django_user_model):
    assert client.get("/api/duplicates").status_code == 401
    visitor = django_user_model.objects.create_user(username="visitor", password="pw-visitor-123")
    _, key = api_token_create(user=visitor, name="not staff")
    assert Client().get("/api/duplicates", **_bearer(key)).status_code == 401
    client.force_login(visitor)
    assert client.get("/api/duplicates").status_code == 401


def test_staff_without_the_view_permission_are_told_so(library, django_user_model):
    clerk = django_user_model.objects.create_user(username="clerk", password="pw-clerk-123", is_staff=True)
    _, key = api_token_create(user=clerk, name="clerk")
    response = Client().get("/api/duplicates", **_bearer(key))
    assert response.status_code == 403
    assert "gallery.view_image" in response.json()["error"]
