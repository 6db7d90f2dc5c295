"""Each result says how much of its score comes from its picture and how much from its labels,
and the parts add up to the score shown, on both stores."""

from __future__ import annotations

import re

import numpy as np
import pytest

from search.query import queries
from search.query import vectors as query_vectors
from tests.factories import indexed_library
from tests.search.query.scoring import hybrid_score, stored_parts
from tests.support.images import image_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("vector_store")]


@pytest.fixture
def library() -> dict[str, list[int]]:
    return indexed_library(
        [
            (1, ["sunset"]),
            (2, ["sunset", "beach"]),
            (3, ["bicycle"]),
            (4, ["zebra"]),
            (5, ["zebra", "grass", "africa"]),
            (6, ["beach"]),
        ]
    )


def test_the_parts_of_every_api_result_add_up_to_its_score_and_match_the_stored_rows(client, library):
    answer = client.get("/api/search", {"text": "zebra on grass"}).json()
    query = query_vectors.query_vector_for_text(text="zebra on grass")
    assert len(answer["results"]) == len(library["all"])
    for result in answer["results"]:
        why = result["why"]
        assert why["picture"] + why["labels"] == result["score"]
        picture, labels, weight = stored_parts(result["id"])
        norm = np.linalg.norm(weight * picture + (1 - weight) * labels)
        assert why["picture_cosine"] == pytest.approx(float(query @ picture), abs=1e-5)
        assert why["labels_cosine"] == pytest.approx(float(query @ labels), abs=1e-5)
        assert why["picture"] == pytest.approx(weight / norm * float(query @ picture), abs=1e-5)
        assert result["score"] == pytest.approx(hybrid_score(query, result["id"]), abs=1e-4)
        assert why["parts"] == []


def test_the_numbers_on_the_page_add_up_to_the_score_shown(client, library):
    html = client.get("/", {"q": "sunset"}).content.decode()
    shown = re.findall(
        r'>(-?\d\.\d{3})</b></span><span class="why-text"><span class="why-p">picture (-?\d\.\d{3})</span>'
        r' \+ <span class="why-l">labels (-?\d\.\d{3})</span>',
        html,
    )
    assert len(shown) == len(library["all"])
    for score, picture, labels in shown:
        assert round(float(picture) + float(labels), 3) == float(score)


def test_words_and_an_image_show_each_half_of_the_query_adding_up_to_the_parts(client, library):
    answer = client.post(
        "/api/search", {"text": "beach", "weight": "0.3", "image": _upload(7)}, format="multipart"
    ).json()
    for result in answer["results"]:
        why = result["why"]
        assert [part["part"] for part in why["parts"]] == ["image", "words"]
        assert sum(p["picture"] for p in why["parts"]) == pytest.approx(why["picture"], abs=1e-9)
        assert sum(p["labels"] for p in why["parts"]) == pytest.approx(why["labels"], abs=1e-9)
        assert why["picture"] + why["labels"] == result["score"]


def test_an_image_without_labels_owes_its_whole_score_to_its_picture(client, library):
    from gallery.services import images_create
    from search.ingest import pipeline, rebuild
    from tests.factories import upload

    added = images_create(uploads=[_unlabelled(upload, 8)]).added
    pipeline.images_embed(image_ids=added)
    rebuild.index_rebuild()
    answer = client.get("/api/search", {"text": "zebra"}).json()
    (result,) = [r for r in answer["results"] if r["id"] == added[0]]
    assert result["why"]["labels_cosine"] is None
    assert result["why"]["labels"] == 0.0
    assert result["why"]["picture"] == result["score"]
    query = query_vectors.query_vector_for_text(text="zebra")
    assert result["score"] == pytest.approx(hybrid_score(query, added[0]), abs=1e-4)


def test_the_search_service_explains_every_hit_it_returns(library):
    result, _ = queries.run(queries.SearchQuery(text="bicycle"))
    assert result.hits and all(hit.why is not None for hit in result.hits)
    assert all(hit.score == hit.why.picture + hit.why.labels for hit in result.hits)


def _upload(seed: int):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(f"q{seed}.png", image_bytes(seed, "PNG"), content_type="image/png")


def _unlabelled(upload, seed: int):
    from dataclasses import replace

    return replace(upload(image_bytes(seed, "PNG"), [], f"u{seed}.png"), unlabelled=True)
