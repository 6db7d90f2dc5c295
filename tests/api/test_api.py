"""The JSON API through Django's test client: search, staff writes, errors, authentication."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client

from api.tokens import api_token_create
from gallery.models import Image
from search.query import ranking
from tests.factories import create_images
from tests.support.images import image_bytes, zip_bytes

# Each test runs against both vector stores (tests/conftest.py, vector_store).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_store")]


@pytest.fixture
def token(staff_user) -> str:
    return api_token_create(user=staff_user, name="tests")[1]


@pytest.fixture
def api(token) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def _ids(response) -> list[int]:
    return [r["id"] for r in response.json()["results"]]


def test_search_by_words_answers_ids_scores_labels_urls_and_generation(client, library, vector_store):
    response = client.get("/api/search", {"text": "zebra", "k": 2})
    assert response.status_code == 200
    data = response.json()
    assert set(_ids(response)) == set(library["zebra"])
    first = data["results"][0]
    assert first["labels"] == ["zebra"]
    assert 0 < first["score"] <= 1
    assert first["image_url"].startswith("http://testserver/media/images/")
    assert first["thumbnail_url"].startswith("http://testserver/media/thumbnails/")
    assert first["page_url"] == f"http://testserver/image/{first['id']}/"
    generation = 1 if vector_store == "faiss" else None  # pgvector: no generations
    assert (data["generation"], data["has_more"], data["offset"], data["k"]) == (generation, True, 0, 2)
    assert client.get(first["thumbnail_url"]).status_code == 200


def test_offset_and_k_slice_the_ranking(client, library):
    full = _ids(client.get("/api/search", {"text": "sunset", "k": 5}))
    assert _ids(client.get("/api/search", {"text": "sunset", "k": 2, "offset": 1})) == full[1:3]
    assert _ids(client.get("/api/search", {"text": "sunset", "k": 2, "offset": 2})) == full[2:4]
    last = client.get("/api/search", {"text": "sunset", "k": 2, "offset": 4}).json()
    assert (len(last["results"]), last["has_more"]) == (1, False)


def test_an_uploaded_image_finds_itself_and_its_token_pages_on(client, library):
    upload = SimpleUploadedFile("q.png", image_bytes(4), "image/png")
    data = client.post("/api/search", {"image": upload, "k": 1}).json()
    assert data["results"][0]["id"] == library["zebra"][0]
    following = client.get("/api/search", {"image_token": data["image_token"], "k": 1, "offset": 1})
    assert following.status_code == 200
    assert _ids(following) != [library["zebra"][0]]


def test_words_and_an_image_together_follow_the_weight(client, library):
    upload = SimpleUploadedFile("q.png", image_bytes(4), "image/png")
    token = client.post("/api/search", {"image": upload}).json()["image_token"]
    words_only = _ids(client.get("/api/search", {"text": "sunset"}))
    assert (
        _ids(client.get("/api/search", {"text": "sunset", "image_token": token, "weight": 0})) == words_only
    )


def test_more_like_this_labels_and_sort(client, library):
    like = _ids(client.get("/api/search", {"image_id": library["zebra"][0]}))
    assert library["zebra"][0] not in like and like[0] == library["zebra"][1]
    filtered = _ids(client.get("/api/search", {"text": "zebra", "labels": ["sunset"]}))
    assert set(filtered) == set(library["sunset"])
    by_date = _ids(client.get("/api/search", {"text": "zebra", "sort": "date"}))
    assert by_date == sorted(library["all"], reverse=True)
    browse = client.get("/api/search", {"labels": ["zebra"]}).json()["results"]
    assert [r["id"] for r in browse] == sorted(library["zebra"], reverse=True)
    assert all(r["score"] is None for r in browse)


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"text": "a", "k": 0}, 400, "Invalid request: k:"),
        ({"text": "a", "sort": "random"}, 400, "Invalid request: sort:"),
        ({"text": "a", "offset": 1000}, 400, "Invalid request: offset:"),
        ({"image_id": 99999}, 404, "does not exist"),
        ({"image_token": "0" * 32}, 404, "expired"),
    ],
)
def test_bad_searches_are_4xx_with_an_error(client, library, params, status, message):
    response = client.get("/api/search", params)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_a_search_without_a_query_lists_the_newest_images(client, library):
    assert _ids(client.get("/api/search", {"text": " \x00 "})) == sorted(library["all"], reverse=True)


def test_results_stop_at_the_thousandth(client, library, monkeypatch):
    monkeypatch.setattr(ranking, "MAX_RESULTS", 4)
    data = client.get("/api/search", {"text": "zebra", "k": 3, "offset": 2}).json()
    assert (len(data["results"]), data["has_more"]) == (2, False)


def test_a_non_image_query_is_a_400(client, library):
    response = client.post("/api/search", {"image": SimpleUploadedFile("q.png", b"text", "image/png")})
    assert response.status_code == 400
    assert "cannot be used for search" in response.json()["error"]


def test_search_without_an_index_is_a_503(client):
    response = client.get("/api/search", {"text": "zebra"})
    assert response.status_code == 503
    assert "Nothing has been indexed yet" in response.json()["error"]


def test_search_with_the_model_missing_is_a_503(client, library, clip_model_missing):
    response = client.get("/api/search", {"text": "zebra"})
    assert response.status_code == 503
    assert "Search is unavailable" in response.json()["error"]


def test_private_search_needs_a_token_or_a_session(client, library, settings, token, staff_user):
    settings.IMAGESEARCH_PUBLIC_SEARCH = False
    response = client.get("/api/search", {"text": "zebra"})
    assert response.status_code == 401
    assert "Sign in or send an API token" in response.json()["error"]
    assert (
        client.get("/api/search", {"text": "zebra"}, HTTP_AUTHORIZATION="Bearer isk_wrong").status_code == 401
    )
    assert (
        client.get("/api/search", {"text": "zebra"}, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    )
    client.force_login(staff_user)
    assert client.get("/api/search", {"text": "zebra"}).status_code == 200


def test_labels_lists_labels_by_use(client, library):
    assert client.get("/api/labels").json() == [
        {"name": "sunset", "images": 2},
        {"name": "zebra", "images": 2},
        {"name": "bicycle", "images": 1},
    ]


def test_staff_upload_many_files_and_a_zip_with_labels(api):
    archive = zip_bytes({"cats/a.png": image_bytes(11), "dogs/b.png": image_bytes(12)})
    response = api.post(
        "/api/images",
        {
            "files": [
                SimpleUploadedFile("x.png", image_bytes(13), "image/png"),
                SimpleUploadedFile("y.png", image_bytes(14), "image/png"),
            ],
            "archive": SimpleUploadedFile("p.zip", archive, "application/zip"),
            "labels": "pets, photos",
            "labels_from_dirs": "true",
        },
    )
    assert response.status_code == 201, response.content
    data = response.json()
    assert len(data["added"]) == 4 and data["refused"] == []
    labels = {i.original_name: set(i.label_names) for i in Image.objects.prefetch_related("labels")}
    assert labels["a.png"] == {"pets", "photos", "cats"}
    assert labels["x.png"] == {"pets", "photos"}
    batch = api.get(f"/api/uploads/{data['batch']}").json()
    assert (batch["total"], batch["pending"], batch["done"]) == (4, 4, False)

    again = api.post("/api/images", {"files": [SimpleUploadedFile("z.png", image_bytes(13))], "labels": "a"})
    assert again.status_code == 200
    assert again.json()["duplicates"] == [{"name": "z.png", "id": data["added"][0]}]  # files come first


def test_an_upload_with_nothing_valid_is_a_400_and_stores_nothing(api):
    response = api.post("/api/images", {"files": [SimpleUploadedFile("x.png", b"no")], "labels": "a"})
    assert response.status_code == 400
    assert "x.png:" in response.json()["error"]
    response = api.post("/api/images", {"files": [SimpleUploadedFile("x.png", image_bytes(1))]})
    assert response.status_code == 400
    assert "Give at least one label" in response.json()["error"]
    assert not Image.objects.exists()


def test_relabel_and_delete(api, client, library):
    target = library["zebra"][0]
    response = api.patch(
        f"/api/images/{target}", {"labels": ["horse", "stripes"]}, content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["labels"] == ["horse", "stripes"]
    bad = api.patch(f"/api/images/{target}", {"labels": ["  "]}, content_type="application/json")
    assert bad.status_code == 400 and "at least one label" in bad.json()["error"]
    assert api.delete(f"/api/images/{target}").status_code == 204
    assert target not in _ids(client.get("/api/search", {"text": "zebra"}))
    again = api.delete(f"/api/images/{target}")
    assert (again.status_code, again.json()) == (404, {"error": "No such image."})
    assert client.get(f"/api/images/{target}").status_code == 404


def test_staff_endpoints_refuse_anonymous_callers_and_non_staff_tokens(client, library, django_user_model):
    assert client.get("/api/status").status_code == 401
    assert client.delete(f"/api/images/{library['zebra'][0]}").status_code == 401
    user = django_user_model.objects.create_user("visitor", password="pw-visitor-123")
    _, key = api_token_create(user=user, name="not staff")
    response = client.get("/api/status", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 401
    assert "error" in response.json()
    assert Image.objects.filter(pk=library["zebra"][0]).exists()


def test_staff_without_the_permission_get_a_403(client, library, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", password="pw-clerk-123", is_staff=True)
    _, key = api_token_create(user=clerk, name="clerk")
    response = client.delete(f"/api/images/{library['zebra'][0]}", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 403
    assert "delete_image" in response.json()["error"]


def test_a_staff_session_needs_its_csrf_token_for_writes(library, staff_user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff_user)
    assert browser.get("/api/status").status_code == 200
    response = browser.delete(f"/api/images/{library['zebra'][0]}")
    assert response.status_code == 403
    assert Image.objects.filter(pk=library["zebra"][0]).exists()


def test_status_counts(api, library, vector_store):
    create_images([(30, ["x"])])
    data = api.get("/api/status").json()
    assert data["counts"] == {"pending": 1, "ready": 5, "failed": 0}
    assert (data["generation"], data["vectors"]) == (1 if vector_store == "faiss" else None, 5)


def test_the_image_endpoint_shows_pending_images_to_staff_only(api, client, library):
    [pending] = create_images([(30, ["x"])])
    assert client.get(f"/api/images/{pending}").status_code == 404
    assert api.get(f"/api/images/{pending}").json()["status"] == "pending"
    assert client.get("/api/images/abc").status_code == 400


def test_the_command_prints_a_working_token(staff_user, client):
    out = io.StringIO()
    call_command(
        "create_api_token", staff_user.username, "--name", "import job", stdout=out, stderr=io.StringIO()
    )
    key = out.getvalue().strip()
    assert client.get("/api/status", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200


def test_the_openapi_description_and_docs_page_are_served(client):
    spec = client.get("/api/openapi.json").json()
    assert {"/api/search", "/api/images", "/api/images/{image_id}", "/api/status", "/knn-service"} <= set(
        spec["paths"]
    )
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert b"/static/ninja/swagger-ui-bundle.js" in docs.content  # served here, not from a CDN
