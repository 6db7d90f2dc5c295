"""What the pgvector store does that FAISS does not (the search features both share are tested
against both stores by the parametrised search tests): writes with the rows, one query, iterative
index scans for rare labels, no mixing of models or dimensions, nothing to rebuild."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gallery import services as gallery_services
from gallery.models import Image, Label
from search import encoder, status
from search.ingest import actions, pipeline, rebuild, sweep
from search.models import ImageVector, IndexState
from search.query import ranking
from search.query import vectors as query_vectors
from search.stores import base as store_base
from search.stores.pgvector import store
from tests.factories import create_images

pytestmark = [pytest.mark.pgvector, pytest.mark.django_db, pytest.mark.usefixtures("pgvector_store")]

STATUS = "/admin/search/indexstate/status/"


def _ids(page: ranking.ResultPage) -> list[int]:
    return [hit.image.pk for hit in page.hits]


def _synthetic_rows(
    vectors: np.ndarray, *, model: str, labels: dict[int, list[str]] | None = None
) -> list[int]:
    """Ready images with these hybrids, written as the pipeline writes them (no model run)."""
    now = timezone.now()
    images = Image.objects.bulk_create(
        [
            Image(
                file=f"images/x/{i}.png",
                sha256=f"{model[:8]}-{i:040d}",
                content_type="image/png",
                status=Image.Status.READY,
                embedding_model=model,
                hybrid_vector=v.astype("<f4").tobytes(),
                hybrid_weight=0.5,
                hybrid_updated_at=now,
            )
            for i, v in enumerate(vectors)
        ]
    )
    ids = [image.pk for image in images]
    for position, names in (labels or {}).items():
        for name in names:
            label, _ = Label.objects.get_or_create(name=name)
            label.images.add(ids[position])
    store.hybrids_write(list(zip(ids, vectors, strict=True)), model=model, now=now)
    return ids


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_an_image_is_searchable_as_soon_as_it_is_ready_with_no_index_to_build(settings):
    [zebra, bicycle] = create_images([(7, ["zebra"]), (3, ["bicycle"])])
    pipeline.images_embed(image_ids=[zebra, bicycle])  # no rebuild
    page = ranking.images_search(vector=query_vectors.query_vector_for_text(text="zebra"))
    assert _ids(page)[0] == zebra
    assert set(_ids(page)) == {zebra, bicycle}
    assert page.generation is None
    assert not settings.INDEX_DIR.exists()  # no generation files


def test_a_search_is_one_query_that_filters_ranks_and_limits(settings):
    ids = create_images([(i, ["zebra"] if i % 2 else ["zebra", "stripes"]) for i in range(1, 7)])
    pipeline.images_embed(image_ids=ids)
    vector = query_vectors.query_vector_for_text(text="zebra")
    with CaptureQueriesContext(connection) as queries:
        page = ranking.images_search(vector=vector, labels=["stripes"], page_size=2)
    touching = [q["sql"] for q in queries.captured_queries if "search_imagevector" in q["sql"]]
    assert len(touching) == 1
    [sql] = touching
    assert "<#>" in sql and "ORDER BY" in sql and "LIMIT 3" in sql and "EXISTS" in sql
    assert '"gallery_image"."status" = ' in sql
    assert len(page.hits) == 2 and page.has_next
    assert all("stripes" in hit.image.label_names for hit in page.hits)


@pytest.fixture
def rare_label_library(settings):
    """400 random vectors of the tiny model's dimension; 6 of them carry the label "rare"."""
    rng = np.random.default_rng(5)
    vectors = _unit(rng, 400, encoder.dimension())
    rare = {int(i): ["rare"] for i in rng.choice(400, 6, replace=False)}
    ids = _synthetic_rows(vectors, model=encoder.model_name(), labels=rare)
    query = _unit(rng, 1, encoder.dimension())[0]
    return {"ids": ids, "vectors": vectors, "rare": [ids[i] for i in rare], "query": query}


def _through_the_hnsw_index(settings) -> None:
    # A library this small would be scored whole and sorted; the planner is told to take the
    # order from the index instead, with the narrowest search (ef_search 1): only the iterative
    # scan can then find every rare image.
    settings.IMAGESEARCH_PGVECTOR_EF_SEARCH = 1
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true)"
        )


def _rare_query(lib, **kwargs):
    label_ids = [Label.objects.get(name="rare").pk]
    return store.nearest_query(
        lib["query"], model=encoder.model_name(), needed=10, label_ids=label_ids, **kwargs
    )


def _exact_order(lib) -> list[int]:
    scores = {pk: float(v @ lib["query"]) for pk, v in zip(lib["ids"], lib["vectors"], strict=True)}
    return sorted(lib["rare"], key=lambda pk: -scores[pk])


def test_a_rare_label_fills_its_page_through_the_index_by_scanning_on(settings, rare_label_library):
    lib = rare_label_library
    _through_the_hnsw_index(settings)
    with connection.cursor():
        store.search_settings()
        assert store.index_name(encoder.dimension()) in _rare_query(lib).explain()
        found = [row.image_id for row in store._run(_rare_query(lib))]
    assert found == _exact_order(lib)


def test_without_the_iterative_scan_the_same_query_would_come_up_short(
    settings, rare_label_library, monkeypatch
):
    _through_the_hnsw_index(settings)
    monkeypatch.setattr(store, "ITERATIVE_SCAN", "off")
    assert len(store._run(_rare_query(rare_label_library))) < len(rare_label_library["rare"])


def test_a_page_the_graph_walk_cannot_fill_is_scored_exactly(settings, rare_label_library, monkeypatch):
    _through_the_hnsw_index(settings)
    monkeypatch.setattr(store, "ITERATIVE_SCAN", "off")  # the walk gives up early, as at max_scan_tuples
    monkeypatch.setattr(store_base, "EXACT_FILTER_LIMIT", 0)
    page = ranking.images_search(vector=rare_label_library["query"], labels=["rare"], page_size=10)
    assert _ids(page) == _exact_order(rare_label_library)


def test_a_narrow_label_filter_is_scored_exactly_without_the_graph(settings, rare_label_library):
    lib = rare_label_library
    with connection.cursor():
        store.search_settings()
        assert store.index_name(encoder.dimension()) not in _rare_query(lib, exact=True).explain()
    page = ranking.images_search(vector=lib["query"], labels=["rare"], page_size=10)
    assert _ids(page) == _exact_order(lib)
    scores = {pk: float(v @ lib["query"]) for pk, v in zip(lib["ids"], lib["vectors"], strict=True)}
    assert [h.score for h in page.hits] == pytest.approx([scores[pk] for pk in _ids(page)], abs=2e-3)


def test_a_deleted_image_takes_its_vector_with_it_and_never_appears():
    ids = create_images([(1, ["zebra"]), (2, ["zebra"])])
    pipeline.images_embed(image_ids=ids)
    vector = query_vectors.query_vector_for_text(text="zebra")
    gallery_services.images_delete(images=Image.objects.filter(pk=ids[0]))
    assert _ids(ranking.images_search(vector=vector)) == [ids[1]]
    assert list(ImageVector.objects.values_list("image_id", flat=True)) == [ids[1]]


def test_an_image_that_is_no_longer_ready_never_appears():
    ids = create_images([(1, ["zebra"]), (2, ["zebra"])])
    pipeline.images_embed(image_ids=ids)
    actions.images_reembed(image_ids=[ids[0]])  # pending again; its vector row stays until then
    assert _ids(ranking.images_search(vector=query_vectors.query_vector_for_text(text="zebra"))) == [ids[1]]


def test_vectors_of_another_model_and_dimension_never_mix_and_get_an_index_of_their_own():
    rng = np.random.default_rng(1)
    dim = encoder.dimension()
    other = _synthetic_rows(_unit(rng, 20, dim * 2), model="another-model")
    same_dim = _synthetic_rows(_unit(rng, 20, dim), model="a-third-model")
    ours = create_images([(1, ["zebra"]), (2, ["bicycle"])])
    pipeline.images_embed(image_ids=ours)

    page = ranking.images_search(vector=query_vectors.query_vector_for_text(text="zebra"), page_size=50)

    assert set(_ids(page)) == set(ours)
    assert not set(_ids(page)) & set(other + same_dim)
    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, "search_imagevector")
    assert {store.index_name(dim), store.index_name(dim * 2)} <= set(indexes)


def test_rebuild_says_there_is_nothing_to_rebuild(staff_client, settings):
    ids = create_images([(1, ["zebra"])])
    pipeline.images_embed(image_ids=ids)  # requests a rebuild, as with FAISS
    report = rebuild.index_rebuild()
    assert not report.built
    assert not status.index_behind()
    response = staff_client.post(STATUS, {"action": "rebuild"}, follow=True)
    assert b"there is no index to rebuild" in response.content
    assert b"pgvector, in the database: 1 vector(s)" in response.content
    assert not settings.INDEX_DIR.exists()


def test_the_status_reports_the_vectors_in_the_database(staff_client):
    ids = create_images([(1, ["a"]), (2, ["b"]), (3, ["c"])])
    pipeline.images_embed(image_ids=ids[:2])
    data = staff_client.get(STATUS.replace("status/", "status.json")).json()
    assert (data["generation"], data["vectors"], data["dimension"], data["behind"]) == (None, 2, 64, False)
    assert data["size_bytes"] > 0


def test_a_library_embedded_with_faiss_becomes_searchable_by_the_sweep_without_the_model(settings):
    settings.IMAGESEARCH_VECTOR_BACKEND = "faiss"
    ids = create_images([(1, ["zebra"]), (2, ["bicycle"])])
    pipeline.images_embed(image_ids=ids)
    settings.IMAGESEARCH_VECTOR_BACKEND = "pgvector"
    assert status.index_behind()
    assert _ids(ranking.images_search(vector=query_vectors.query_vector_for_text(text="zebra"))) == []

    assert sweep.index_sweep()["vectors_backfilled"] == 2

    assert not status.index_behind()
    page = ranking.images_search(vector=query_vectors.query_vector_for_text(text="zebra"))
    assert _ids(page)[0] == ids[0]


def test_the_sweep_serves_rebuild_requests_so_no_page_says_updating_for_ever():
    ids = create_images([(1, ["zebra"])])
    pipeline.images_embed(image_ids=ids)  # requests a rebuild; its message never goes out here
    assert IndexState.get().behind_requests
    sweep.index_sweep()
    assert not IndexState.get().behind_requests
    page = ranking.images_search(vector=query_vectors.query_vector_for_text(text="zebra"))
    assert status.BEHIND_NOTICE not in page.notices
