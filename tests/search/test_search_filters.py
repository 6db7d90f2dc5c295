"""Label filters, date order, browsing and words-plus-image queries (search.query.ranking)."""

from __future__ import annotations

import numpy as np
import pytest

from gallery import services as gallery_services
from gallery.models import Image
from search import encoder, errors
from search.query import queries, ranking
from search.query import vectors as query_vectors
from search.query.explain import QueryPart, QueryVector
from search.stores import base as store_base
from tests.factories import create_indexed_images

# Each test runs against both vector stores (tests/conftest.py, vector_store).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_store")]


@pytest.fixture
def ids() -> list[int]:
    return create_indexed_images([(i, ["sunset"] if i % 2 else ["bicycle", "sunset"]) for i in range(1, 11)])


def _ids(page: ranking.ResultPage) -> list[int]:
    return [hit.image.pk for hit in page.hits]


def test_a_wide_label_filter_over_fetched_from_the_index_equals_exact_scoring(ids, monkeypatch):
    vector = query_vectors.query_vector_for_text(text="bicycle")
    exact = ranking.images_search(vector=vector, labels=["bicycle"], page_size=3, page=2)
    monkeypatch.setattr(store_base, "EXACT_FILTER_LIMIT", 0)  # force the index path
    from_index = ranking.images_search(vector=vector, labels=["bicycle"], page_size=3, page=2)
    assert _ids(exact) == _ids(from_index)
    assert [h.score for h in exact.hits] == pytest.approx([h.score for h in from_index.hits], abs=1e-5)
    assert exact.has_next == from_index.has_next is False  # 5 bicycles: page 2 of 3 is the last


@pytest.mark.parametrize("exact_limit", [0, 5000])
def test_a_deleted_image_never_appears_in_filtered_results(ids, monkeypatch, exact_limit):
    monkeypatch.setattr(store_base, "EXACT_FILTER_LIMIT", exact_limit)
    vector = query_vectors.query_vector_for_text(text="bicycle")
    first = ranking.images_search(vector=vector, labels=["bicycle"]).hits[0].image
    gallery_services.images_delete(images=[first])
    assert first.pk not in _ids(ranking.images_search(vector=vector, labels=["bicycle"]))


def test_filtered_results_carry_every_chosen_label(ids):
    vector = query_vectors.query_vector_for_text(text="sunset")
    page = ranking.images_search(vector=vector, labels=["BICYCLE", "sunset"])
    assert len(page.hits) == 5
    assert all({"bicycle", "sunset"} <= set(hit.image.label_names) for hit in page.hits)


def test_date_order_reorders_only_the_best_matches(ids, monkeypatch):
    monkeypatch.setattr(ranking, "DATE_SORT_POOL", 4)
    vector = query_vectors.query_vector_for_text(text="bicycle")
    best = _ids(ranking.images_search(vector=vector, page_size=4))
    by_date = ranking.images_search(vector=vector, page_size=10, sort="date")
    assert _ids(by_date) == sorted(best, reverse=True)
    assert not by_date.has_next


def test_browsing_needs_neither_the_model_nor_the_index(ids, settings, tmp_path):
    settings.INDEX_DIR = tmp_path / "no-index"
    settings.IMAGESEARCH_CLIP_MODEL = str(tmp_path / "no-model")
    encoder.reset()
    try:
        page = ranking.images_browse(labels=["bicycle"], page_size=3)
        assert _ids(page) == sorted(ids[1::2], reverse=True)[:3]
        assert page.has_next
    finally:
        encoder.reset()


def test_words_and_image_query_is_the_normalised_weighted_sum():
    image = np.array([3.0, 0.0, 0.0, 4.0], dtype=np.float32)
    text = np.array([0.0, 2.0, 0.0, 0.0], dtype=np.float32)
    vector = QueryVector.combined(
        [
            QueryPart("image", 0.25, query_vectors.unit(image)),
            QueryPart("words", 0.75, query_vectors.unit(text)),
        ]
    ).vector[0]
    expected = 0.25 * image / 5 + 0.75 * text / 2
    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), rtol=1e-6)


def test_an_image_weight_outside_0_to_1_is_refused():
    token = query_vectors.remember_image(b"a picture", np.ones(4, dtype=np.float32) / 2)
    with pytest.raises(errors.QueryError, match="image weight"):
        queries.query_vector(queries.SearchQuery(text="bicycle", image_token=token, image_weight=1.5))


def test_only_ready_images_are_browsed(ids):
    Image.objects.filter(pk=ids[0]).update(status=Image.Status.FAILED)
    assert ids[0] not in _ids(ranking.images_browse(page_size=50))
