"""The emphasis slider: ``alpha * cos(q, image) + (1 - alpha) * cos(q, labels)`` per query, on
both stores, exact against a brute-force scan of the stored parts at this scale."""

from __future__ import annotations

import pytest

from search.query import vectors as query_vectors
from tests.factories import indexed_library
from tests.search.query.scoring import alpha_score, hybrid_score

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("vector_store")]

WORDS = ["sunset", "beach", "zebra", "bicycle", "moon", "apple", "grass", "snow"]


@pytest.fixture
def library() -> dict[str, list[int]]:
    # 40 images, one to three labels each, the pictures unrelated to the labels (random seeds):
    # the picture's ranking and the labels' ranking disagree.
    specs = [
        (seed, sorted({WORDS[seed % 8], WORDS[(seed * 3) % 8], WORDS[(seed // 5) % 8]})) for seed in range(40)
    ]
    return indexed_library(specs)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_the_emphasis_ranks_exactly_as_a_brute_force_scan_of_alpha_scores(client, library, alpha):
    answer = client.get("/api/search", {"text": "zebra on the beach", "alpha": alpha, "k": 40}).json()
    query = query_vectors.query_vector_for_text(text="zebra on the beach")
    expected = sorted(library["all"], key=lambda pk: (-alpha_score(query, pk, alpha), pk))
    got = [result["id"] for result in answer["results"]]
    assert [round(alpha_score(query, pk, alpha), 5) for pk in got] == [
        round(alpha_score(query, pk, alpha), 5) for pk in expected
    ]
    assert set(got) == set(expected)
    for result in answer["results"]:
        assert result["score"] == pytest.approx(alpha_score(query, result["id"], alpha), abs=1e-5)
        assert result["why"]["picture"] + result["why"]["labels"] == result["score"]
        assert result["why"]["picture_weight"] == pytest.approx(alpha)


def test_the_two_ends_of_the_slider_give_different_rankings(client, library):
    looks = [
        r["id"] for r in client.get("/api/search", {"text": "zebra", "alpha": 1, "k": 10}).json()["results"]
    ]
    labelled = [
        r["id"] for r in client.get("/api/search", {"text": "zebra", "alpha": 0, "k": 10}).json()["results"]
    ]
    assert looks != labelled
    assert set(labelled[:5]) <= set(library["zebra"])


def test_without_an_emphasis_the_stored_hybrids_rank(client, library):
    plain = client.get("/api/search", {"text": "moon", "k": 40}).json()["results"]
    query = query_vectors.query_vector_for_text(text="moon")
    assert [r["id"] for r in plain] == sorted(library["all"], key=lambda pk: (-hybrid_score(query, pk), pk))


def test_the_search_page_keeps_the_emphasis_in_its_links_and_says_it(client, library):
    html = client.get("/", {"q": "moon", "alpha": "0.8"}).content.decode()
    assert "Ranked 80 % by what the picture looks like and 20 % by what the labels say." in html
    assert "alpha=0.8" in html.split('rel="next"')[1].split(">")[0]
    assert 'class="emphasis-reset" href="?q=moon"' in html


@pytest.mark.parametrize("alpha", ["-0.1", "1.5", "much"])
def test_an_emphasis_outside_0_to_1_is_refused_in_words(client, library, alpha):
    page = client.get("/", {"q": "moon", "alpha": alpha})
    assert page.status_code == 400
    assert "alpha" in page.content.decode()
    api = client.get("/api/search", {"text": "moon", "alpha": alpha})
    assert api.status_code == 400 and "alpha" in api.json()["error"]
