"""An emphasised search re-scores the hybrid pool together with the rows nearest by picture (on
either store: FAISS's picture index of the generation, pgvector's picture column and its HNSW
index, or an exact scan of a narrow label filter), so the pictures nearest the query are found
even where their labels rank them far down; a FAISS generation without that index, or with a
damaged one, still serves every search."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from search.models import IndexState
from search.query import ranking, slots
from search.query import vectors as query_vectors
from search.stores import faiss as search_index
from search.stores import faiss_store
from search.stores.selection import vector_store
from tests.factories import indexed_library
from tests.search.query.scoring import alpha_score

pytestmark = pytest.mark.django_db(transaction=True)

WORDS = ["sunset", "beach", "zebra", "bicycle", "moon", "apple", "grass", "snow"]
QUERY = "zebra on the beach"
HYBRID_POOL = 3  # the hybrid index's share of an emphasis, small beside this library


@pytest.fixture
def library(request, settings) -> dict[str, list[int]]:
    # 40 images whose pictures are unrelated to their labels (random seeds): the rows nearest by
    # picture are not the rows nearest by hybrid.
    if "vector_store" not in request.fixturenames:  # the tests of FAISS's picture index
        settings.IMAGESEARCH_VECTOR_BACKEND = "faiss"
    specs = [
        (seed, sorted({WORDS[seed % 8], WORDS[(seed * 3) % 8], WORDS[(seed // 5) % 8]})) for seed in range(40)
    ]
    return indexed_library(specs)


@pytest.fixture
def small_hybrid_pool(monkeypatch) -> None:
    monkeypatch.setattr(ranking, "EMPHASIS_POOL", HYBRID_POOL)


def _ids(page: ranking.ResultPage) -> list[int]:
    return [hit.image.pk for hit in page.hits]


def _by_alpha(query, ids, alpha: float) -> list[int]:
    return sorted(ids, key=lambda pk: (-alpha_score(query, pk, alpha), pk))


def _hybrid_pool(query, needed: int) -> list[int]:
    """The store's hybrid candidates for a search asking for ``needed`` (FAISS's flat kind, or
    pgvector's graph over 40 rows: exact), without the rows nearest by picture."""
    found = (
        vector_store()
        .nearest(query[None], needed=needed, exclude_id=None, label_ids=[], slot=slots.model_slot)
        .found
    )
    return [image.pk for image, _ in found]


def _without_picture_index() -> None:
    """The served generation as one written before the picture index existed."""
    directory = settings.INDEX_DIR
    manifest = search_index.read_current_manifest(directory)
    path = directory / f"gen-{manifest.generation:06d}.json"
    data = json.loads(path.read_text())
    del data["picture"]
    path.write_text(json.dumps(data))
    (directory / manifest.picture.file).unlink()
    search_index.reset_readers()


@pytest.mark.usefixtures("vector_store")
def test_an_emphasis_on_the_picture_finds_the_pictures_the_hybrid_pool_misses(library, small_hybrid_pool):
    query = query_vectors.query_vector_for_text(text=QUERY)
    page = ranking.images_search(vector=query, alpha=1.0, page_size=5)
    expected = _by_alpha(query, library["all"], 1.0)[:5]
    hybrid_pool = _hybrid_pool(query, 5 + 1)
    assert set(expected) - set(hybrid_pool), "the library must hide picture matches from the hybrid pool"
    assert _ids(page) == expected
    for hit in page.hits:
        assert hit.score == pytest.approx(alpha_score(query, hit.image.pk, 1.0), abs=1e-5)


@pytest.mark.usefixtures("vector_store")
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_the_emphasis_with_a_small_hybrid_pool_still_ranks_as_a_brute_force_scan(
    library, small_hybrid_pool, alpha
):
    query = query_vectors.query_vector_for_text(text=QUERY)
    page = ranking.images_search(vector=query, alpha=alpha, page_size=10)
    expected = _by_alpha(query, library["all"], alpha)[:10]
    assert [round(alpha_score(query, pk, alpha), 5) for pk in _ids(page)] == [
        round(alpha_score(query, pk, alpha), 5) for pk in expected
    ]


@pytest.mark.usefixtures("vector_store")
def test_a_narrow_label_filter_finds_its_pictures_by_an_exact_scan(library, small_hybrid_pool):
    query = query_vectors.query_vector_for_text(text=QUERY)
    page = ranking.images_search(vector=query, alpha=1.0, labels=["moon"], page_size=4)
    assert _ids(page) == _by_alpha(query, library["moon"], 1.0)[:4]


@pytest.mark.usefixtures("vector_store")
def test_an_emphasis_leaves_out_the_excluded_image_among_the_pictures_too(library, small_hybrid_pool):
    query = query_vectors.query_vector_for_text(text=QUERY)
    nearest = _by_alpha(query, library["all"], 1.0)[0]
    page = ranking.images_search(vector=query, alpha=1.0, page_size=5, exclude_id=nearest)
    assert nearest not in _ids(page)
    assert _ids(page) == _by_alpha(query, [pk for pk in library["all"] if pk != nearest], 1.0)[:5]


def test_a_generation_without_a_picture_index_re_scores_the_hybrid_pool_alone(library, small_hybrid_pool):
    query = query_vectors.query_vector_for_text(text=QUERY)
    _without_picture_index()
    hybrid_pool = _hybrid_pool(query, 5 + 1)
    page = ranking.images_search(vector=query, alpha=1.0, page_size=5)
    assert _ids(page) == _by_alpha(query, hybrid_pool, 1.0)[:5]
    assert ranking.images_search(vector=query, page_size=5).generation == page.generation


def test_a_damaged_picture_index_leaves_the_default_search_as_it_was_and_asks_for_a_rebuild(
    library, small_hybrid_pool
):
    query = query_vectors.query_vector_for_text(text=QUERY)
    before = ranking.images_search(vector=query, page_size=10)
    manifest = search_index.read_current_manifest(settings.INDEX_DIR)
    picture = settings.INDEX_DIR / manifest.picture.file
    data = bytearray(picture.read_bytes())
    data[len(data) // 2] ^= 0xFF
    picture.write_bytes(bytes(data))
    search_index.reset_readers()
    faiss_store._repairs_requested.clear()  # what a new process starts with
    requested = IndexState.get().requested
    after = ranking.images_search(vector=query, page_size=10)
    assert _ids(after) == _ids(before) and after.generation == before.generation
    assert not [notice for notice in after.notices if "damaged" in notice.lower()]
    emphasised = ranking.images_search(vector=query, alpha=1.0, page_size=5)
    assert _ids(emphasised) == _by_alpha(query, _hybrid_pool(query, 5 + 1), 1.0)[:5]
    assert "checksum" in faiss_store.index_reader().status()["picture_error"]
    assert IndexState.get().requested == requested + 1  # a rebuild repairs it, asked for once
