"""``image_url`` in ``POST /knn-service`` is accepted only when it is exactly a ready image's own
file address as this server gives it out (``Image.file.url``): relative, or absolute on the
request's own scheme and host. Everything else is a 400 and is never fetched."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from gallery import services as gallery_services
from gallery.models import Image

# Each test runs against both vector stores (tests/conftest.py, vector_store).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_store")]


@pytest.fixture
def bicycle(library) -> Image:
    return Image.objects.get(pk=library["bicycle"][0])


def _knn(client: Client, image_url: str, **extra):
    body = {"image_url": image_url, "num_images": 3, "indice_name": "imagesearch"}
    return client.post("/knn-service", json.dumps(body), content_type="application/json", **extra)


def _url(template: str, image: Image) -> str:
    file = image.file.url  # "/media/images/ab/abcd....png"
    folder, _, basename = file.rpartition("/")
    stem, _, ext = basename.rpartition(".")
    return template.format(
        file=file,
        file_no_slash=file.removeprefix("/"),
        thumb=image.thumbnail.url,
        folder=folder,
        folder_name=folder.rpartition("/")[2],
        under_images=file.removeprefix("/media/images/"),
        basename=basename,
        stem=stem,
        ext=ext,
    )


def _assert_refused(response, reason: str) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error.startswith("image_url must be") and "not fetched" in error
    assert reason in error


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{file}", id="relative"),
        pytest.param("http://testserver{file}", id="absolute-on-this-host"),
        pytest.param("HTTP://TestServer{file}", id="scheme-and-host-in-any-case"),
    ],
)
def test_a_ready_images_own_file_url_searches_with_that_image_first(client, bicycle, template):
    response = _knn(client, _url(template, bicycle))
    assert response.status_code == 200, response.content
    assert response.json()[0]["id"] == bicycle.pk


def test_the_url_the_api_gives_for_an_image_is_accepted_as_it_is(client, bicycle):
    given = client.get("/api/search", {"text": "bicycle", "k": 1}).json()["results"][0]
    assert given["id"] == bicycle.pk
    assert _knn(client, given["image_url"]).json()[0]["id"] == bicycle.pk


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("http://evil.example{file}", id="foreign-host"),
        pytest.param("https://evil.example{file}", id="foreign-host-https"),
        pytest.param("http://192.0.2.1/cat.jpg", id="foreign-ip"),
        pytest.param("http://testserver.evil.com{file}", id="look-alike-host-suffix"),
        pytest.param("http://eviltestserver{file}", id="look-alike-host-prefix"),
        pytest.param("http://testserver@evil.example{file}", id="own-host-as-userinfo"),
        pytest.param("http://user@testserver{file}", id="userinfo-before-own-host"),
        pytest.param("http://testserver\\@evil.example{file}", id="backslash-userinfo"),
        pytest.param("http://testserver:8080{file}", id="own-host-another-port"),
        pytest.param("https://testserver{file}", id="own-host-another-scheme"),
        pytest.param("//evil.example{file}", id="protocol-relative-foreign"),
        pytest.param("//testserver{file}", id="protocol-relative-own-host"),
        pytest.param("http:testserver{file}", id="scheme-without-slashes"),
        pytest.param("ftp://testserver{file}", id="ftp-scheme"),
        pytest.param("file://{file}", id="file-scheme"),
        pytest.param("file:///etc/passwd", id="file-scheme-system-file"),
        pytest.param("data:image/png;base64,iVBORw0KGgo=", id="data-scheme"),
        pytest.param("javascript:alert(1)", id="javascript-scheme"),
        pytest.param("{file_no_slash}", id="path-not-from-the-root"),
        pytest.param(" http://testserver{file}", id="leading-space"),
        pytest.param("http://evil.example/?u=http://testserver{file}", id="own-url-in-a-foreign-query"),
    ],
)
def test_addresses_not_on_this_server_are_refused_never_fetched(client, bicycle, template):
    _assert_refused(_knn(client, _url(template, bicycle)), "address on this server (http://testserver/...")


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{thumb}", id="its-thumbnail"),
        pytest.param("http://testserver{thumb}", id="its-thumbnail-absolute"),
        pytest.param("/media/../settings.py", id="traversal-out-of-media"),
        pytest.param("/media/images/../../imagesearch/settings.py", id="traversal-from-images"),
        pytest.param("{folder}/../{folder_name}/{basename}", id="traversal-back-to-the-file"),
        pytest.param("{folder}/./{basename}", id="dot-segment"),
        pytest.param("/media/%2e%2e/settings.py", id="percent-encoded-traversal"),
        pytest.param("{folder}/%2e%2e/{folder_name}/{basename}", id="percent-encoded-traversal-to-file"),
        pytest.param("{folder}/{stem}%2e{ext}", id="percent-encoded-dot-in-the-name"),
        pytest.param("/media/%69mages/{under_images}", id="percent-encoded-letter"),
        pytest.param("/media//images/{under_images}", id="doubled-slash"),
        pytest.param("/MEDIA/images/{under_images}", id="media-in-capitals"),
        pytest.param("{file}?download=1", id="query-string"),
        pytest.param("{file}?", id="empty-query-string"),
        pytest.param("{file}#top", id="fragment"),
        pytest.param("{file}#", id="empty-fragment"),
        pytest.param("{file}%3Fx", id="percent-encoded-question-mark"),
        pytest.param("http://testserver{file}?x=1#y", id="absolute-with-query-and-fragment"),
        pytest.param("{file}/", id="trailing-slash"),
        pytest.param("{folder}/{stem}.jpg", id="another-extension"),
        pytest.param("{folder}/0000000000.png", id="no-such-file"),
        pytest.param("/media/", id="the-media-root"),
        pytest.param("/static/admin/css/base.css", id="outside-media"),
        pytest.param("/api/search?text=bicycle", id="an-api-path"),
    ],
)
def test_addresses_on_this_server_that_are_not_exactly_an_images_file_are_refused(client, bicycle, template):
    _assert_refused(_knn(client, _url(template, bicycle)), "address of an indexed image of this library")


def _make_pending(image: Image) -> None:
    Image.objects.filter(pk=image.pk).update(status=Image.Status.PENDING)


def _make_failed(image: Image) -> None:
    Image.objects.filter(pk=image.pk).update(status=Image.Status.FAILED, failure_reason="could not decode")


def _delete(image: Image) -> None:
    gallery_services.images_delete(images=[image])


def _embed_with_another_model(image: Image) -> None:
    Image.objects.filter(pk=image.pk).update(embedding_model="another-model")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_make_pending, id="pending"),
        pytest.param(_make_failed, id="failed"),
        pytest.param(_delete, id="deleted"),
        pytest.param(_embed_with_another_model, id="made-by-another-model"),
    ],
)
@pytest.mark.parametrize("template", ["{file}", "http://testserver{file}"], ids=["relative", "absolute"])
def test_an_image_that_is_not_ready_and_indexed_cannot_be_the_query(client, bicycle, change, template):
    url = _url(template, bicycle)  # its address while it was ready (its vectors stay on the row)
    change(bicycle)
    _assert_refused(_knn(client, url), "address of an indexed image of this library")


def test_on_a_host_with_a_port_only_that_host_and_port_are_accepted(client, bicycle):
    here = {"HTTP_HOST": "localhost:8000"}
    accepted = _knn(client, _url("http://localhost:8000{file}", bicycle), **here)
    assert accepted.status_code == 200 and accepted.json()[0]["id"] == bicycle.pk
    for other in ("http://localhost{file}", "http://localhost:8001{file}", "http://testserver{file}"):
        _assert_refused(_knn(client, _url(other, bicycle), **here), "(http://localhost:8000/...")


def test_over_https_the_https_address_is_the_images_own(client, bicycle):
    accepted = _knn(client, _url("https://testserver{file}", bicycle), secure=True)
    assert accepted.status_code == 200 and accepted.json()[0]["id"] == bicycle.pk
    _assert_refused(
        _knn(client, _url("http://testserver{file}", bicycle), secure=True), "https://testserver/"
    )


def test_a_host_outside_allowed_hosts_cannot_make_its_own_addresses_acceptable(client, bicycle):
    response = _knn(client, _url("http://evil.example{file}", bicycle), HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert b'"id"' not in response.content
