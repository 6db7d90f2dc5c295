"""Admin sign-in: after IMAGESEARCH_LOGIN_FAILURE_LIMIT failures from one address (django-axes),
that address may not sign in, even with the right password; other addresses still may."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"


def _sign_in(client: Client, password: str):
    return client.post(LOGIN, {"username": "staff", "password": password, "next": "/admin/"})


def test_repeated_failures_lock_the_address_out_and_not_others(staff_user, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    attacker = Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(4):
        assert _sign_in(attacker, "wrong").status_code == 200  # the form again
    locked = _sign_in(attacker, "wrong")
    assert locked.status_code == 429
    refused = _sign_in(attacker, "pw-staff-123")  # the right password, too late
    assert refused.status_code == 429
    assert "_auth_user_id" not in attacker.session
    assert "too many" in refused.content.decode().lower()

    colleague = Client(REMOTE_ADDR="198.51.100.8")
    signed_in = _sign_in(colleague, "pw-staff-123")
    assert signed_in.status_code == 302
    assert "_auth_user_id" in colleague.session


def test_a_successful_sign_in_resets_the_count(staff_user):
    client = Client(REMOTE_ADDR="198.51.100.9")
    for _ in range(4):
        _sign_in(client, "wrong")
    assert _sign_in(client, "pw-staff-123").status_code == 302
    client.logout()
    for _ in range(4):
        assert _sign_in(client, "wrong").status_code == 200
    assert _sign_in(client, "pw-staff-123").status_code == 302
