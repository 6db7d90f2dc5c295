"""The search page and the image page, through Django's test client (no worker: the tests
embed and index directly through the services)."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from gallery import services as gallery_services
from gallery.models import Image
from search import dispatch
from search.query import ranking
from tests.factories import create_images, indexed_library
from tests.support.images import image_bytes

# Each test runs against both vector stores (tests/conftest.py, vector_store).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_store")]


@pytest.fixture
def library() -> dict[str, list[int]]:
    """Four sunsets, three bicycles, two zebras; one sunset is also a bicycle (the chips and
    filters need an image with two labels)."""
    return indexed_library(
        [(1, ["sunset"]), (2, ["sunset"]), (3, ["sunset"]), (4, ["sunset", "bicycle"])]
        + [(5, ["bicycle"]), (6, ["bicycle"]), (7, ["zebra"]), (8, ["zebra"])]
    )


def _result_ids(response) -> list[int]:
    return [hit.image.pk for hit in response.context["page"].hits]


def test_text_search_shows_thumbnails_labels_scores_and_more_like_this(client, library):
    response = client.get("/", {"q": "zebra"})
    assert response.status_code == 200
    html = response.content.decode()
    assert set(_result_ids(response)[:2]) == set(library["zebra"])
    top = response.context["page"].hits[0]
    assert f'href="/image/{top.image.pk}/"' in html
    assert f'href="/?like={top.image.pk}"' in html
    assert 'alt="zebra"' in html
    assert re.search(r'class="why-picture w\d+"', html)
    assert re.search(r'<b class="score-value"[^>]*>-?\d\.\d{3}</b>', html)
    assert re.search(r'picture -?\d\.\d{3}</span> \+ <span class="why-l">labels -?\d\.\d{3}</span>', html)
    assert "/media/thumbnails/" in html


def test_label_chip_narrows_the_query_to_images_carrying_every_chosen_label(client, library):
    response = client.get("/", {"q": "sunset", "label": "bicycle"})
    assert set(_result_ids(response)) == set(library["bicycle"])
    response = client.get("/", {"q": "sunset", "label": ["bicycle", "Sunset"]})
    assert _result_ids(response) == [library["bicycle"][0]]
    chips = response.context["chips"]
    assert [(c.name, c.active) for c in chips if c.active] == [("bicycle", True), ("Sunset", True)]
    # removing a chip keeps the words and the other chip
    assert chips[0].url == "?q=sunset&label=Sunset"


def test_no_results_explains_what_to_change(client, library):
    response = client.get("/", {"q": "zebra", "label": ["zebra", "sunset"]})
    assert response.status_code == 200
    assert _result_ids(response) == []
    assert b"No images match." in response.content
    assert b"Remove a label filter" in response.content


def test_unknown_label_filter_matches_nothing(client, library):
    response = client.get("/", {"q": "zebra", "label": "unicorn"})
    assert response.status_code == 200
    assert _result_ids(response) == []


def test_sort_by_date_puts_the_newest_upload_first(client, library):
    response = client.get("/", {"q": "sunset", "sort": "date"})
    ids = _result_ids(response)
    assert sorted(ids, reverse=True) == ids  # ids grow with upload time
    assert set(ids) == set(library["all"])


def test_pages_keep_the_words_the_filters_and_the_order(client, library, monkeypatch):
    monkeypatch.setattr(ranking, "PAGE_SIZE", 2)
    first = client.get("/", {"q": "sunset", "label": "sunset", "sort": "date"})
    assert first.context["links"]["next"] == "?q=sunset&label=sunset&sort=date&page=2"
    second = client.get("/" + first.context["links"]["next"])
    assert second.status_code == 200
    assert second.context["page"].page == 2
    assert second.context["links"]["prev"] == "?q=sunset&label=sunset&sort=date"
    seen = _result_ids(first) + _result_ids(second)
    assert sorted(seen, reverse=True) == seen == sorted(library["sunset"], reverse=True)
    assert not second.context["page"].has_next


def test_an_uploaded_image_finds_itself_first_and_its_pages_are_get_links(client, library, monkeypatch):
    monkeypatch.setattr(ranking, "PAGE_SIZE", 3)
    response = client.post("/", {"image": SimpleUploadedFile("q.png", image_bytes(7), "image/png")})
    assert response.status_code == 200
    assert _result_ids(response)[0] == library["zebra"][0]
    token = response.context["query"].image_token
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert response.context["links"]["next"] == f"?qimg={token}&page=2"
    page2 = client.get("/", {"qimg": token, "page": 2})
    assert page2.status_code == 200
    assert not set(_result_ids(page2)) & set(_result_ids(response))


def test_words_and_an_image_together_are_weighted_by_the_slider(client, library):
    data = image_bytes(7)  # a zebra picture
    only_image = client.post("/", {"image": SimpleUploadedFile("q.png", data, "image/png")})
    token = only_image.context["query"].image_token
    # all weight on the image: the same order as the image alone
    image_side = client.get("/", {"qimg": token, "q": "bicycle", "w": "1"})
    assert _result_ids(image_side) == _result_ids(only_image)
    # all weight on the words: the same order as the words alone
    word_side = client.get("/", {"qimg": token, "q": "bicycle", "w": "0"})
    assert _result_ids(word_side) == _result_ids(client.get("/", {"q": "bicycle"}))
    assert word_side.context["query"].kind == "hybrid"
    assert b'id="weight" hidden' not in word_side.content


def test_a_post_without_an_image_redirects_to_a_shareable_link(client, library):
    response = client.post("/", {"q": "zebra", "label": "zebra"})
    assert response.status_code == 302
    assert response["Location"] == "/?q=zebra&label=zebra"


def test_more_like_this_leaves_out_the_image_itself(client, library):
    target = library["zebra"][0]
    response = client.get("/", {"like": target})
    ids = _result_ids(response)
    assert target not in ids
    assert ids[0] == library["zebra"][1]


def test_start_page_shows_recent_images_and_label_chips(client, library):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Recently added" in html
    assert 'href="/?label=sunset"' in html
    assert [h.image.pk for h in response.context["start"]["recent"]] == sorted(library["all"], reverse=True)


def test_browsing_a_label_without_words_lists_its_images_newest_first(client, library):
    response = client.get("/", {"label": "bicycle"})
    assert response.status_code == 200
    assert _result_ids(response) == sorted(library["bicycle"], reverse=True)
    assert all(hit.score is None for hit in response.context["page"].hits)


def test_an_empty_library_says_nothing_is_indexed_yet(client):
    response = client.get("/")
    assert b"Nothing has been indexed yet" in response.content
    response = client.get("/", {"q": "zebra"})
    assert response.status_code == 503
    assert b"Nothing has been indexed yet" in response.content


def test_images_still_being_indexed_are_announced(client, library):
    create_images([(20, ["zebra"])])
    response = client.get("/", {"q": "zebra"})
    assert b"1 image(s) are still being indexed" in response.content
    assert b"being indexed and will be searchable" in client.get("/").content


def test_an_index_behind_the_database_is_announced(client, library):
    image = Image.objects.get(pk=library["zebra"][0])
    gallery_services.image_relabel(image=image, names=["zebra", "stripes"])
    dispatch.index_rebuild_request()
    response = client.get("/", {"q": "zebra"})
    assert b"The index is being updated" in response.content


def test_an_unavailable_model_is_a_clear_503_and_browsing_still_works(client, library, clip_model_missing):
    response = client.get("/", {"q": "zebra"})
    assert response.status_code == 503
    assert b"Search is unavailable" in response.content
    start = client.get("/")
    assert b"unavailable right now" in start.content
    assert client.get("/", {"label": "zebra"}).status_code == 200


def test_why_the_model_failed_is_shown_to_staff_only(client, staff_user, library, clip_model_missing):
    path = "no-such-model"  # the model setting's directory: a path of this machine
    answer = client.get("/", {"q": "zebra"})
    assert answer.status_code == 503 and path.encode() not in answer.content
    assert b"the administrators can see why" in answer.content
    api = client.get("/api/search", {"text": "zebra"})
    assert api.status_code == 503 and path not in api.json()["error"]
    start = client.get("/")
    assert b"unavailable right now" in start.content and path.encode() not in start.content
    client.force_login(staff_user)
    assert path.encode() in client.get("/").content  # staff see the reason


@pytest.mark.parametrize(
    "params",
    [{"page": "x"}, {"q": "a", "sort": "random"}, {"q": "a", "w": "2"}, {"qimg": "../etc"}, {"like": "-1"}],
)
def test_malformed_parameters_are_a_400_with_the_reason(client, library, params):
    response = client.get("/", params)
    assert response.status_code == 400
    assert b"could not be understood" in response.content


def test_a_non_image_upload_is_refused_with_the_reason(client, library):
    response = client.post("/", {"image": SimpleUploadedFile("q.png", b"not an image", "image/png")})
    assert response.status_code == 400
    assert b"cannot be used for search" in response.content


def test_an_expired_image_search_asks_for_the_image_again(client, library):
    response = client.get("/", {"qimg": "0" * 32})
    assert response.status_code == 404
    assert b"expired" in response.content


def test_image_page_shows_the_full_image_labels_and_nearest_neighbours(client, library):
    target = library["bicycle"][0]  # sunset + bicycle
    response = client.get(f"/image/{target}/")
    assert response.status_code == 200
    html = response.content.decode()
    image = Image.objects.get(pk=target)
    assert f'src="{image.file.url}"' in html
    assert 'href="/?label=bicycle"' in html and 'href="/?label=sunset"' in html
    neighbours = [hit.image.pk for hit in response.context["neighbours"]]
    assert target not in neighbours
    assert set(neighbours) == set(library["all"]) - {target}


def test_image_page_of_a_pending_image_is_hidden_from_the_public(staff_client, library):
    [pending] = create_images([(30, ["zebra"])])
    assert Client().get(f"/image/{pending}/").status_code == 404
    response = staff_client.get(f"/image/{pending}/")
    assert response.status_code == 200
    assert b"not indexed yet" in response.content
    assert staff_client.get("/image/999999/").status_code == 404
