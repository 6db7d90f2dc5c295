"""API tokens in the admin: a staff user who may add tokens makes them for themselves only (a
token acts with its user's permissions), a superuser for anyone; the new token never travels in
a cookie."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from api.models import ApiToken

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/api/apitoken/add/"


@pytest.fixture
def token_keeper(django_user_model) -> Client:
    """A staff user (no superuser) with every API token permission, signed in."""
    user = django_user_model.objects.create_user("keeper", password="pw-keeper-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="api"))
    client = Client()
    client.force_login(user)
    client.user = user
    return client


def test_staff_cannot_mint_a_token_for_a_superuser(token_keeper, django_user_model):
    root = django_user_model.objects.create_superuser("root", password="pw-root-123")
    response = token_keeper.post(ADD_URL, {"user": root.pk, "name": "escalate"})
    assert response.status_code == 200  # the form again, with its error
    assert "Select a valid choice" in response.content.decode()
    assert not ApiToken.objects.filter(user=root).exists()


def test_staff_mint_their_own_tokens_and_see_only_theirs(token_keeper, django_user_model):
    root = django_user_model.objects.create_superuser("root", password="pw-root-123")
    ApiToken.objects.create(user=root, name="root's", prefix="isk_rootroot", key_hash="0" * 64)
    response = token_keeper.post(ADD_URL, {"user": token_keeper.user.pk, "name": "mine"})
    assert response.status_code == 302
    assert ApiToken.objects.filter(user=token_keeper.user, name="mine").exists()
    listing = token_keeper.get("/admin/api/apitoken/").content.decode()
    assert "mine" in listing and "root&#x27;s" not in listing and "root's" not in listing


def test_a_superuser_mints_a_token_for_another_user(client, django_user_model):
    root = django_user_model.objects.create_superuser("root", password="pw-root-123")
    other = django_user_model.objects.create_user("importer", is_staff=True)
    client.force_login(root)
    assert client.post(ADD_URL, {"user": other.pk, "name": "nightly"}).status_code == 302
    assert ApiToken.objects.filter(user=other, name="nightly").exists()


def test_the_new_token_is_shown_once_and_never_sent_in_a_cookie(token_keeper):
    response = token_keeper.post(ADD_URL, {"user": token_keeper.user.pk, "name": "laptop"})
    assert response.status_code == 302
    assert "messages" not in response.cookies  # the message waits in the session, on the server
    page = token_keeper.get(response["Location"]).content.decode()
    assert "The new token is isk_" in page
    assert "The new token is" not in token_keeper.get("/admin/api/apitoken/").content.decode()
