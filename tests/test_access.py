"""Access and safety: who may upload, relabel, delete, re-embed and rebuild (each checked from
both sides), search following IMAGESEARCH_PUBLIC_SEARCH, CSRF on every form, how stored files
are served, and the production settings (no start without a secret key, the secure headers,
``manage.py check --deploy``). Request size limits are in tests/gallery/test_bad_uploads.py."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from gallery.models import Image
from search.ingest import pipeline, rebuild
from search.models import IndexState
from tests.factories import create_images
from tests.support.constants import ROOT, UPLOAD_URL
from tests.support.images import image_bytes

pytestmark = pytest.mark.django_db

STATUS = "/admin/search/indexstate/status/"
LOGIN_REDIRECT = re.compile(r"^/admin/login/\?next=")


@pytest.fixture
def clients(django_user_model, staff_client) -> dict[str, Client]:
    """Anonymous, a signed-in user who is not staff, staff without permissions, and staff."""
    plain = django_user_model.objects.create_user(username="plain", password="pw-plain-123")
    bare_staff = django_user_model.objects.create_user(username="bare", password="pw-bare-123", is_staff=True)
    result = {"anonymous": Client(), "user": Client(), "staff-without-permissions": Client()}
    result["user"].force_login(plain)
    result["staff-without-permissions"].force_login(bare_staff)
    result["staff"] = staff_client
    return result


@pytest.fixture
def image() -> Image:
    [pk] = create_images([(1, ["sunset"])])
    pipeline.images_embed(image_ids=[pk])
    return Image.objects.get(pk=pk)


def _assert_refused(response, who: str, *, api: bool = False) -> None:
    if api:
        assert response.status_code == (403 if who == "staff-without-permissions" else 401), response.content
        assert response.json()["error"]
    elif who == "staff-without-permissions":
        assert response.status_code == 403
    else:
        assert response.status_code == 302 and LOGIN_REDIRECT.match(response["Location"]), response


REFUSED = ["anonymous", "user", "staff-without-permissions"]


def test_only_staff_can_upload(clients):
    def post(client):
        return client.post(
            UPLOAD_URL, {"files": [SimpleUploadedFile("a.png", image_bytes(5))], "labels": "x"}
        )

    for who in REFUSED:
        _assert_refused(post(clients[who]), who)
        _assert_refused(clients[who].get(UPLOAD_URL), who)
    assert Image.objects.count() == 0
    assert post(clients["staff"]).status_code == 200
    assert Image.objects.count() == 1


def test_only_staff_can_relabel(clients, image):
    url = f"/admin/gallery/image/{image.pk}/change/"
    for who in REFUSED:
        _assert_refused(clients[who].post(url, {"label_text": "stolen"}), who)
    assert image.label_names == ["sunset"]
    response = clients["staff"].post(url, {"label_text": "dusk, sea"})
    assert response.status_code == 302
    assert sorted(Image.objects.get(pk=image.pk).label_names) == ["dusk", "sea"]


def test_only_staff_can_delete(clients, image):
    url = f"/admin/gallery/image/{image.pk}/delete/"
    for who in REFUSED:
        _assert_refused(clients[who].post(url, {"post": "yes"}), who)
    assert Image.objects.filter(pk=image.pk).exists()
    assert clients["staff"].post(url, {"post": "yes"}).status_code == 302
    assert not Image.objects.filter(pk=image.pk).exists()


def test_only_staff_can_reembed(clients, image):
    data = {"action": "reembed_selected", "_selected_action": [str(image.pk)]}
    for who in REFUSED:
        _assert_refused(clients[who].post("/admin/gallery/image/", data), who)
        _assert_refused(clients[who].post(STATUS, {"action": "reembed_all"}), who)
    assert Image.objects.get(pk=image.pk).status == Image.Status.READY
    assert clients["staff"].post("/admin/gallery/image/", data).status_code == 302
    assert Image.objects.get(pk=image.pk).status == Image.Status.PENDING


@pytest.mark.parametrize("action", ["rebuild", "embed_missing", "retry_failed", "reembed_all"])
def test_only_staff_can_run_the_index_actions(
    clients, image, action, django_capture_on_commit_callbacks, sent
):
    # Failed, with no vector: what each of these actions puts back in the queue.
    Image.objects.filter(pk=image.pk).update(
        status=Image.Status.FAILED, failure_reason="x", image_vector=None, embedding_model=""
    )
    requested = IndexState.get().requested
    for who in REFUSED:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            _assert_refused(clients[who].post(STATUS, {"action": action}), who)
        assert callbacks == []
        _assert_refused(clients[who].get(STATUS), who)
    assert Image.objects.get(pk=image.pk).status == Image.Status.FAILED
    assert IndexState.get().requested == requested

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert clients["staff"].post(STATUS, {"action": action}).status_code == 302
    assert callbacks and sent  # the action's work is handed over after commit
    if action == "rebuild":
        assert IndexState.get().requested == requested + 1
    else:
        assert Image.objects.get(pk=image.pk).status == Image.Status.PENDING


def test_only_staff_can_use_the_api_to_change_the_library(clients, image):
    upload = {"files": [SimpleUploadedFile("b.png", image_bytes(6))], "labels": "x"}
    for who in REFUSED:
        client = clients[who]
        _assert_refused(client.post("/api/images", upload), who, api=True)
        body = '{"labels": ["stolen"]}'
        _assert_refused(client.patch(f"/api/images/{image.pk}", body, "application/json"), who, api=True)
        _assert_refused(client.delete(f"/api/images/{image.pk}"), who, api=True)
        if who != "staff-without-permissions":
            _assert_refused(client.get("/api/status"), who, api=True)
        upload["files"][0].seek(0)
    assert Image.objects.count() == 1 and Image.objects.get().label_names == ["sunset"]

    staff = clients["staff"]
    assert staff.post("/api/images", upload).status_code == 201
    assert (
        staff.patch(f"/api/images/{image.pk}", '{"labels": ["dusk"]}', "application/json").status_code == 200
    )
    assert staff.delete(f"/api/images/{image.pk}").status_code == 204
    assert staff.get("/api/status").status_code == 200


# --- Public or private search -------------------------------------------------------------------


def test_private_search_sends_anonymous_visitors_to_sign_in_and_lets_users_in(clients, image, settings):
    rebuild.index_rebuild()
    settings.IMAGESEARCH_PUBLIC_SEARCH = False
    pages = ["/?q=sunset", f"/image/{image.pk}/", image.file.url, image.thumbnail.url]
    for url in pages:
        response = clients["anonymous"].get(url)
        assert response.status_code == 302 and LOGIN_REDIRECT.match(response["Location"]), url
    assert (
        clients["anonymous"].post("/", {"image": SimpleUploadedFile("q.png", image_bytes(1))}).status_code
        == 302
    )
    for url in ["/api/search?text=sunset", "/api/labels", f"/api/images/{image.pk}"]:
        response = clients["anonymous"].get(url)
        assert response.status_code == 401 and response.json()["error"], url
    for url in [*pages, "/api/search?text=sunset", "/api/labels"]:
        assert clients["user"].get(url).status_code == 200, url


def test_public_search_is_open_to_anonymous_visitors(clients, image, settings):
    rebuild.index_rebuild()
    settings.IMAGESEARCH_PUBLIC_SEARCH = True
    for url in ["/?q=sunset", f"/image/{image.pk}/", image.file.url, "/api/search?text=sunset"]:
        assert clients["anonymous"].get(url).status_code == 200, url


# --- CSRF ---------------------------------------------------------------------------------------


def test_every_form_refuses_a_post_without_its_csrf_token(staff_user, image):
    staff = Client(enforce_csrf_checks=True)
    staff.force_login(staff_user)
    posts = {
        UPLOAD_URL: {"files": [SimpleUploadedFile("c.png", image_bytes(7))], "labels": "x"},
        f"/admin/gallery/image/{image.pk}/change/": {"label_text": "forged"},
        f"/admin/gallery/image/{image.pk}/delete/": {"post": "yes"},
        "/admin/gallery/image/": {"action": "reembed_selected", "_selected_action": [str(image.pk)]},
        STATUS: {"action": "reembed_all"},
        f"/admin/gallery/label/{image.labels.get().pk}/change/": {"name": "forged"},
        "/admin/logout/": {},
        "/": {"image": SimpleUploadedFile("q.png", image_bytes(1))},
        "/api/images": {"files": [SimpleUploadedFile("d.png", image_bytes(8))], "labels": "x"},
    }
    for url, data in posts.items():
        assert staff.post(url, data).status_code == 403, url
    assert Client(enforce_csrf_checks=True).post("/admin/login/", {"username": "staff"}).status_code == 403
    image.refresh_from_db()
    assert (image.label_names, image.status, Image.objects.count()) == (["sunset"], Image.Status.READY, 1)

    # With the token the page gave, the same post goes through.
    staff.get(UPLOAD_URL)
    token = staff.cookies[settings.CSRF_COOKIE_NAME].value
    data = {
        "files": [SimpleUploadedFile("c.png", image_bytes(7))],
        "labels": "x",
        "csrfmiddlewaretoken": token,
    }
    assert staff.post(UPLOAD_URL, data).status_code == 200
    assert Image.objects.count() == 2


# --- Stored files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, client_name, content_type",
    [
        ("PNG", "holiday.jpg", "image/png"),  # the extension lies: the content decides
        ("JPEG", "holiday.png", "image/jpeg"),
        ("GIF", "page.html", "image/gif"),
        ("WEBP", "x.svg", "image/webp"),
        ("BMP", "x", "image/bmp"),
        ("TIFF", "x.exe", "image/tiff"),
    ],
)
def test_stored_files_have_generated_names_and_are_served_with_their_real_type(
    staff_client, fmt, client_name, content_type
):
    data = image_bytes(9, fmt)
    staff_client.post(
        UPLOAD_URL, {"files": [SimpleUploadedFile(client_name, data, "text/html")], "labels": "x"}
    )
    image = Image.objects.get()
    assert Path(image.file.name).stem == image.sha256  # never the client's name
    response = Client().get(image.file.url)
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert b"".join(response.streaming_content) == data


def test_media_serves_nothing_but_stored_images(image, tmp_path):
    root = Path(settings.MEDIA_ROOT)
    (root / "note.html").write_text("<script>alert(1)</script>")
    (root / "images" / "drawing.svg").write_text("<svg/>")
    (root / "images" / "passwd.png").symlink_to("/etc/passwd")
    secret = tmp_path / "secret.png"
    secret.write_bytes(image_bytes(3))
    client = Client()
    for path in [
        "/media/note.html",
        "/media/images/drawing.svg",
        "/media/images/passwd.png",  # a link out of MEDIA_ROOT
        "/media/../secret.png",
        "/media/%2e%2e/secret.png",
        "/media/images/",
        "/media/images/00/nothing.png",
        "/media//etc/passwd",
    ]:
        assert client.get(path).status_code == 404, path
    assert client.get(image.file.url).status_code == 200
    assert client.post(image.file.url).status_code == 405


# --- Production settings ------------------------------------------------------------------------


def _run_django(args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "IMAGESEARCH_"))}
    clean.update(IMAGESEARCH_DATA_DIR=str(settings.DATA_DIR), **env)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def test_production_settings_refuse_to_start_without_a_secret_key():
    for key in ({}, {"DJANGO_SECRET_KEY": ""}):
        started = _run_django(["manage.py", "check"], DJANGO_DEBUG="0", **key)
        assert started.returncode != 0
        assert "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off" in started.stderr
    assert _run_django(["manage.py", "check"], DJANGO_DEBUG="1").returncode == 0  # development


PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "images.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://images.example.com",
    "DJANGO_SECURE_COOKIES": "1",
    "DJANGO_SECURE_SSL_REDIRECT": "1",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "DJANGO_SECURE_HSTS_PRELOAD": "1",
    "DJANGO_BEHIND_PROXY": "1",
}


def test_check_deploy_passes_behind_https_and_warns_only_about_https_on_plain_http():
    behind_https = _run_django(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **PRODUCTION)
    assert behind_https.returncode == 0, behind_https.stdout + behind_https.stderr
    assert "no issues" in behind_https.stdout

    # ./run on one machine, plain HTTP: the four HTTPS-only settings stay off, deliberately.
    plain_http = _run_django(
        ["manage.py", "check", "--deploy"], DJANGO_SECRET_KEY=PRODUCTION["DJANGO_SECRET_KEY"]
    )
    warnings = set(re.findall(r"\(security\.(W\d+)\)", plain_http.stdout + plain_http.stderr))
    assert warnings == {"W004", "W008", "W012", "W016"}


def test_pages_carry_the_secure_headers(client, settings):
    response = client.get("/")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    behind_https = Client()  # the middleware reads these settings when it starts
    assert behind_https.get("/").status_code == 301
    assert behind_https.get("/", secure=True)["Strict-Transport-Security"].startswith("max-age=31536000")
