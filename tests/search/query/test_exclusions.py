"""Words left out: ``beach -people`` in the search box, ``exclude`` in the API. The query moves
away from them, and an image carrying a label equal to one is left out entirely."""

from __future__ import annotations

import numpy as np
import pytest

from gallery.models import Image, Label
from search import encoder
from search.ingest import pipeline, rebuild
from search.query import vectors as query_vectors
from search.query.vectors import words_split
from tests.factories import indexed_library

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("vector_store")]


def _away_from(vector: np.ndarray, direction: np.ndarray) -> np.ndarray:
    vector = vector - (vector @ direction) * direction
    return (vector / np.linalg.norm(vector)).astype(np.float32)


@pytest.fixture
def library() -> dict[str, list[int]]:
    """Ten images labelled "beach" or "dune", three more also "people", and one unlabelled-as-
    people image whose picture is the word "people" itself. Every other vector is made
    orthogonal to "people": leaving it out must not disturb their order."""
    specs = [(seed, ["beach" if seed % 2 else "dune"]) for seed in range(10)]
    specs += [(seed, ["beach", "people"]) for seed in range(10, 13)] + [(13, ["dune"])]
    found = indexed_library(specs)
    people = query_vectors.query_vector_for_text(text="people").astype(np.float64)
    people /= np.linalg.norm(people)
    rng = np.random.default_rng(0)
    for label in Label.objects.all():
        vector = people if label.name == "people" else _away_from(rng.normal(size=people.size), people)
        Label.objects.filter(pk=label.pk).update(vector=encoder.to_bytes(vector))
    for pk in found["all"]:
        vector = people if pk == found["all"][13] else _away_from(rng.normal(size=people.size), people)
        Image.objects.filter(pk=pk).update(image_vector=encoder.to_bytes(vector))
    pipeline.hybrids_refresh(image_ids=found["all"])
    rebuild.index_rebuild()
    return found


def _ids(client, **params) -> list[int]:
    return [r["id"] for r in client.get("/api/search", {"k": 50, **params}).json()["results"]]


def test_images_labelled_with_a_word_left_out_drop_out_and_the_others_keep_their_order(client, library):
    before = _ids(client, text="beach")
    after = _ids(client, text="beach -people")
    assert set(library["people"]) <= set(before)
    assert not set(library["people"]) & set(after)
    unrelated = [pk for pk in before if pk not in library["people"] and pk != library["all"][13]]
    assert [pk for pk in after if pk in unrelated] == unrelated


def _scores(client, **params) -> dict[int, float]:
    return {r["id"]: r["score"] for r in client.get("/api/search", {"k": 50, **params}).json()["results"]}


def test_the_results_move_away_from_a_word_left_out(client, library):
    looks_like_people = library["all"][13]
    before = _scores(client, text="beach")
    after = _scores(client, text="beach", exclude=["people"])
    assert after[looks_like_people] < before[looks_like_people]
    unrelated = [pk for pk in before if pk not in library["people"] and pk != looks_like_people]
    # The query moved away from "people", so towards everything orthogonal to it.
    assert all(after[pk] > before[pk] for pk in unrelated if before[pk] > 0)
    assert after[looks_like_people] - before[looks_like_people] < min(
        after[pk] - before[pk] for pk in unrelated
    )
    assert list(after) == list(_scores(client, text="beach -people"))


def test_the_page_says_what_was_left_out_and_keeps_it_in_its_links(client, library):
    html = client.get("/", {"q": 'beach -people -"red car"'}).content.decode()
    assert "Leaving out “people”, “red car”: the results move away from them" in html
    assert "q=beach+-people+-%22red+car%22" in html


def test_only_words_left_out_show_the_newest_images_not_labelled_so(client, library):
    everything = _ids(client)  # no query: every ready image, newest first
    kept = [pk for pk in everything if pk not in library["people"]]
    assert set(library["people"]) <= set(everything) and kept != everything
    assert _ids(client, text="-people") == kept
    assert _ids(client, exclude=["people"], labels=["beach"]) == [
        pk for pk in _ids(client, labels=["beach"]) if pk not in library["people"]
    ]
    page = client.get("/", {"q": "-people"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Leaving out “people”: images labelled so are not shown." in html
    assert "Newest images" in html


def test_a_hyphen_inside_a_word_is_part_of_it():
    assert words_split('t-shirt -logo -"two words" x') == ("t-shirt x", ("logo", "two words"))
