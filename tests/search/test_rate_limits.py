"""Per-client rate limits: text queries, image queries and /knn-service counted apart, a 429 with
Retry-After and a sentence on the page and in JSON, clients told apart by address (a trusted
proxy header when configured) or account, staff and token callers with their own limits."""

from __future__ import annotations

import base64

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from api.tokens import api_token_create
from tests.support.images import image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(settings, rate_limits, library):
    # Per day: a fixed window that rolls over while a test runs (resetting its count) is rare.
    settings.IMAGESEARCH_RATE_LIMIT_TEXT = "3/d"
    settings.IMAGESEARCH_RATE_LIMIT_IMAGE = "2/d"
    settings.IMAGESEARCH_RATE_LIMIT_KNN = "2/d"
    settings.IMAGESEARCH_RATE_LIMIT_STAFF_TEXT = "6/d"
    return settings


def _searches(client: Client, n: int, **extra) -> list[int]:
    return [client.get("/", {"q": f"sunset {i}"}, **extra).status_code for i in range(n)]


def test_a_client_over_its_text_limit_gets_a_429_page_with_retry_after_and_a_sentence(limits, client):
    assert _searches(client, 3) == [200, 200, 200]
    page = client.get("/", {"q": "sunset again"})
    assert page.status_code == 429
    assert 1 <= int(page["Retry-After"]) <= 86400
    assert "Too many searches from your address: at most 3 per day." in page.content.decode()
    assert "Try again in" in page.context["error"]


def test_the_api_answers_429_json_with_retry_after(limits, client):
    assert [client.get("/api/search", {"text": f"zebra {i}"}).status_code for i in range(3)] == [200] * 3
    answer = client.get("/api/search", {"text": "zebra"})
    assert answer.status_code == 429
    assert int(answer["Retry-After"]) >= 1
    assert answer.json()["error"].startswith("Too many searches from your address: at most 3 per day.")


def test_text_image_and_knn_limits_are_counted_apart(limits, client):
    assert _searches(client, 4)[-1] == 429
    tiff = SimpleUploadedFile("q.tiff", image_bytes(1, "TIFF"))
    assert client.post("/", {"image": tiff}).status_code == 400  # refused as a TIFF, not limited
    knn = {"text": "sunset"}
    assert client.post("/knn-service", knn, content_type="application/json").status_code == 200
    assert client.post("/knn-service", knn, content_type="application/json").status_code == 200
    third = client.post("/knn-service", knn, content_type="application/json")
    assert third.status_code == 429 and "Retry-After" in third
    assert "Too many /knn-service calls" in third.json()["error"]
    png = base64.b64encode(image_bytes(2, "PNG")).decode()
    assert (
        client.post("/api/search", {"image": SimpleUploadedFile("q.png", base64.b64decode(png))}).status_code
        == 200
    )
    limited = client.post("/api/search", {"image": SimpleUploadedFile("q.png", image_bytes(3, "PNG"))})
    assert limited.status_code == 429 and "Too many image searches" in limited.json()["error"]


def test_another_address_has_its_own_count(limits, client):
    assert _searches(client, 4)[-1] == 429
    assert _searches(Client(REMOTE_ADDR="127.0.0.3"), 3) == [200, 200, 200]


def test_the_trusted_proxy_header_names_the_client_when_configured(limits, client):
    behind = {"HTTP_X_FORWARDED_FOR": "203.0.113.9, 198.51.100.1"}
    assert _searches(client, 4, **behind)[-1] == 429
    # Without the setting the header is anyone's to write: the socket's address counts.
    assert _searches(client, 1, HTTP_X_FORWARDED_FOR="198.51.100.2")[-1] == 429
    limits.IMAGESEARCH_CLIENT_IP_HEADER = "X-Forwarded-For"
    assert _searches(client, 3, HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.2") == [200] * 3
    assert _searches(client, 1, HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.2") == [429]
    assert _searches(client, 1, HTTP_X_FORWARDED_FOR="198.51.100.3") == [200]


def test_staff_sessions_and_api_tokens_have_their_own_higher_limits(limits, staff_client, staff_user):
    assert _searches(staff_client, 7) == [200] * 6 + [429]
    assert "from this account" in staff_client.get("/", {"q": "x"}).content.decode()
    _, key = api_token_create(user=staff_user, name="t")
    token_client = Client(REMOTE_ADDR="127.0.0.4", HTTP_AUTHORIZATION=f"Bearer {key}")
    # The same account as the session: its count goes on (one account, one count).
    assert token_client.get("/api/search", {"text": "x"}).status_code == 429
    assert _searches(Client(REMOTE_ADDR="127.0.0.4"), 3) == [200] * 3  # the address alone: anonymous


def test_off_means_no_limit(limits, client):
    limits.IMAGESEARCH_RATE_LIMIT_TEXT = "off"
    assert set(_searches(client, 8)) == {200}


def test_a_client_over_its_limit_is_refused_before_the_view_reads_its_query(limits, client):
    assert _searches(client, 4)[-1] == 429
    malformed = client.get("/", {"q": "sunset", "page": "two"})  # the view would answer a 400
    assert malformed.status_code == 429
