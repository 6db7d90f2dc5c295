"""Good matches only: results below the score calibrated on the library's own labels are
hidden, the page and the API say how many, and a library that cannot say hides nothing."""

from __future__ import annotations

import pytest

from search.calibration import cutoffs
from search.calibration.library import library_calibrate
from search.query import vectors as query_vectors
from tests.factories import indexed_library
from tests.search.query.scoring import hybrid_score

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("vector_store")]

WORDS = ["sunset", "beach", "zebra", "bicycle", "moon"]


@pytest.fixture
def library() -> dict[str, list[int]]:
    # Eight images per label (five labels): enough for the calibration to measure each label.
    found = indexed_library([(seed, [WORDS[seed % 5]]) for seed in range(40)])
    library_calibrate()
    return found


def _threshold(kind: str = "text") -> float:
    found = cutoffs.cutoff(kind, 0.8)
    assert found.threshold is not None, found.reason
    return found.threshold


def test_the_api_hides_results_below_the_calibrated_score_and_says_how_many(client, library):
    threshold = _threshold()
    everything = client.get("/api/search", {"text": "zebra", "k": 40}).json()
    good = client.get("/api/search", {"text": "zebra", "k": 40, "min_precision": 0.8}).json()
    kept = [r["id"] for r in everything["results"] if r["score"] >= threshold]
    assert [r["id"] for r in good["results"]] == kept
    assert good["hidden"] == len(everything["results"]) - len(kept)
    assert good["cutoff"] == {"min_score": threshold, "min_precision": 0.8, "kind": "text"}
    query = query_vectors.query_vector_for_text(text="zebra")
    assert all(hybrid_score(query, r["id"]) >= threshold - 1e-4 for r in good["results"])


def test_the_page_says_how_many_were_hidden_and_where_the_estimate_comes_from(client, library):
    everything = client.get("/api/search", {"text": "zebra", "k": 24}).json()
    hidden = sum(1 for r in everything["results"] if r["score"] < _threshold())
    html = client.get("/", {"q": "zebra", "good": "1"}).content.decode()
    assert f"Good matches only: {hidden} weaker result" in html
    assert "The estimate comes from this library's own labels" in html
    assert 'id="good" name="good" value="1" checked' in html
    assert 'rel="next"' not in html or "good=1" in html.split('rel="next"')[1].split(">")[0]


def test_an_image_query_uses_the_image_calibration(client, library):
    # The tiny model's random pictures do not group by label: no score reaches 0.8 for image
    # queries, while word queries (labels' own texts) do.
    assert cutoffs.cutoff("image", 0.8).threshold is None and _threshold("text") is not None
    answer = client.get("/api/search", {"image_id": library["all"][0], "k": 40, "min_precision": 0.8}).json()
    assert answer["cutoff"] is None and answer["hidden"] == 0
    assert any("for image queries" in notice for notice in answer["notices"])


def test_a_library_with_too_few_labelled_images_hides_nothing_and_says_why(client):
    indexed_library([(1, ["sunset"]), (2, ["zebra"]), (3, ["moon"])])
    library_calibrate()
    answer = client.get("/api/search", {"text": "zebra", "min_precision": 0.8}).json()
    assert len(answer["results"]) == 3 and answer["hidden"] == 0 and answer["cutoff"] is None
    assert any(
        "Good matches only" in notice and "Too few labelled images" in notice for notice in answer["notices"]
    )


@pytest.mark.parametrize("level", ["0.2", "1", "x"])
def test_a_precision_level_out_of_range_is_refused_in_words(client, library, level):
    answer = client.get("/api/search", {"text": "zebra", "min_precision": level})
    assert answer.status_code == 400 and "min_precision" in answer.json()["error"]
