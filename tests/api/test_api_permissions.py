"""Who may call what, one permission at a time: a token acts with its user's permissions
(``change_image`` to relabel, ``delete_image`` to delete), a revoked token or the token of an
inactive user opens nothing, and with IMAGESEARCH_PUBLIC_SEARCH=0 clip-retrieval's endpoints
need a token or a session like the search itself."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from api.models import ApiToken
from api.tokens import api_token_create
from gallery.models import Image

pytestmark = pytest.mark.django_db


def _staff_token(django_user_model, username: str, *permissions: str) -> str:
    """The token of a staff user who has exactly these gallery permissions."""
    user = django_user_model.objects.create_user(username, password=f"pw-{username}-123", is_staff=True)
    gallery = Permission.objects.filter(content_type__app_label="gallery")
    user.user_permissions.set(gallery.filter(codename__in=permissions))
    return api_token_create(user=user, name=username)[1]


def _bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def _relabel(client: Client, pk: int, key: str):
    body = {"labels": ["horse"]}
    return client.patch(f"/api/images/{pk}", body, content_type="application/json", **_bearer(key))


def test_relabelling_needs_change_image_and_deleting_needs_delete_image(client, library, django_user_model):
    pk = library["zebra"][0]
    deleter = _staff_token(django_user_model, "deleter", "view_image", "delete_image")
    editor = _staff_token(django_user_model, "editor", "view_image", "change_image")

    refused = _relabel(client, pk, deleter)
    assert refused.status_code == 403 and "'gallery.change_image'" in refused.json()["error"]
    assert Image.objects.get(pk=pk).label_names == ["zebra"]
    refused = client.delete(f"/api/images/{pk}", **_bearer(editor))
    assert refused.status_code == 403 and "'gallery.delete_image'" in refused.json()["error"]
    assert Image.objects.filter(pk=pk).exists()

    # Each may do what the other may not.
    assert _relabel(client, pk, editor).status_code == 200
    assert Image.objects.get(pk=pk).label_names == ["horse"]
    assert client.delete(f"/api/images/{pk}", **_bearer(deleter)).status_code == 204
    assert not Image.objects.filter(pk=pk).exists()


def test_a_revoked_token_opens_nothing(library, staff_user, staff_client):
    client = Client()  # the token alone, no session
    token, key = api_token_create(user=staff_user, name="nightly import")
    assert client.get("/api/status", **_bearer(key)).status_code == 200

    revoked = staff_client.post(f"/admin/api/apitoken/{token.pk}/delete/", {"post": "yes"})
    assert revoked.status_code == 302 and not ApiToken.objects.filter(pk=token.pk).exists()

    pk = library["zebra"][0]
    for response in (
        client.get("/api/status", **_bearer(key)),
        _relabel(client, pk, key),
        client.delete(f"/api/images/{pk}", **_bearer(key)),
    ):
        assert response.status_code == 401, response.content
    assert Image.objects.get(pk=pk).label_names == ["zebra"]


def test_the_token_of_an_inactive_user_opens_nothing(client, library, staff_user, settings):
    _, key = api_token_create(user=staff_user, name="laptop")
    settings.IMAGESEARCH_PUBLIC_SEARCH = False
    assert client.get("/api/search", {"text": "zebra"}, **_bearer(key)).status_code == 200

    staff_user.is_active = False
    staff_user.save(update_fields=["is_active"])

    pk = library["zebra"][0]
    for response in (
        client.get("/api/status", **_bearer(key)),
        client.get("/api/search", {"text": "zebra"}, **_bearer(key)),
        client.delete(f"/api/images/{pk}", **_bearer(key)),
    ):
        assert response.status_code == 401, response.content
    assert Image.objects.filter(pk=pk).exists()


def _clip_retrieval_calls(client: Client, library, **headers):
    body = {"text": "zebra", "num_images": 2, "indice_name": "imagesearch"}
    metadata = {"ids": library["zebra"], "indice_name": "imagesearch"}
    return {
        "/knn-service": client.post("/knn-service", json.dumps(body), "application/json", **headers),
        "/indices-list": client.get("/indices-list", **headers),
        "/metadata": client.post("/metadata", json.dumps(metadata), "application/json", **headers),
    }


def test_without_public_search_clip_retrievals_endpoints_need_a_token_or_a_session(
    client, library, settings, django_user_model
):
    settings.IMAGESEARCH_PUBLIC_SEARCH = False
    for path, response in _clip_retrieval_calls(client, library).items():
        assert response.status_code == 401, path
        assert "Sign in or send an API token" in response.json()["error"], path
        assert "Access-Control-Allow-Origin" not in response, path

    user = django_user_model.objects.create_user("reader", password="pw-reader-123")
    _, key = api_token_create(user=user, name="front end")
    signed_in = Client()
    signed_in.force_login(user)
    for caller, headers in ((client, _bearer(key)), (signed_in, {})):
        answers = _clip_retrieval_calls(caller, library, **headers)
        assert {path: r.status_code for path, r in answers.items()} == dict.fromkeys(answers, 200)
        assert {hit["id"] for hit in answers["/knn-service"].json()} == set(library["zebra"])
        assert answers["/indices-list"].json() == ["imagesearch"]
        assert {item["id"] for item in answers["/metadata"].json()} == set(library["zebra"])
