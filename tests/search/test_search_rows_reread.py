"""Search re-reads only about a page of rows at first, and reads on when rows dropped out."""

from __future__ import annotations

import pytest

from gallery import services as gallery_services
from gallery.models import Image
from search.ingest import pipeline, rebuild
from search.query import ranking
from search.query import vectors as query_vectors
from search.stores import faiss as search_index
from tests.factories import create_images

# Each test runs against both vector stores (tests/conftest.py, vector_store).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_store")]


def _zebras_ranked(count: int):
    """``count`` indexed images labelled zebra: the query vector for "zebra" and their ids in rank order."""
    ids = create_images([(seed, ["zebra"]) for seed in range(1, count + 1)])
    pipeline.images_embed(image_ids=ids)
    rebuild.index_rebuild()
    vector = query_vectors.query_vector_for_text(text="zebra")
    ranked = [hit.image.pk for hit in ranking.images_search(vector=vector, page_size=count).hits]
    assert sorted(ranked) == sorted(ids)
    return vector, ranked


def test_a_page_is_filled_from_further_ranks_when_many_top_rows_were_deleted():
    vector, ranked = _zebras_ranked(30)

    # More rows than the first read covers (5 needed + 8) vanish before the next rebuild.
    gallery_services.images_delete(images=Image.objects.filter(pk__in=ranked[:15]))
    page = ranking.images_search(vector=vector, page_size=5)

    assert [hit.image.pk for hit in page.hits] == ranked[15:20]
    assert page.has_next


def test_labels_of_the_hits_shown_come_with_the_page(django_assert_num_queries):
    ids = create_images([(seed, ["zebra", f"tag{seed}"]) for seed in range(1, 9)])
    pipeline.images_embed(image_ids=ids)
    rebuild.index_rebuild()
    page = ranking.images_search(vector=query_vectors.query_vector_for_text(text="zebra"), page_size=4)

    with django_assert_num_queries(0):  # prefetched: showing them costs no query per hit
        names = [hit.image.label_names for hit in page.hits]

    assert all("zebra" in n and len(n) == 2 for n in names)


def test_pages_past_the_over_fetch_window_are_full_and_never_repeat_an_image(monkeypatch, vector_store):
    vector, ranked = _zebras_ranked(60)

    # Half the library goes before the next rebuild, from the second rank on: the first
    # request to the index for page 2 (11 rows needed, 38 asked for) holds only 8 that remain.
    deleted = set(ranked[2:32])
    gallery_services.images_delete(images=Image.objects.filter(pk__in=deleted))
    remaining = [pk for pk in ranked if pk not in deleted]
    asked: list[int] = []
    search = search_index.IndexReader.search
    monkeypatch.setattr(
        search_index.IndexReader,
        "search",
        lambda self, v, k, **options: asked.append(k) or search(self, v, k, **options),
    )

    pages = [ranking.images_search(vector=vector, page=n, page_size=5) for n in (1, 2, 3, 4, 5, 6)]

    assert [[hit.image.pk for hit in page.hits] for page in pages] == [
        remaining[start : start + 5] for start in range(0, 30, 5)
    ]
    assert [page.has_next for page in pages] == [True] * 5 + [False]
    if vector_store == "faiss":
        assert max(asked) > min(asked)  # the request to the index was widened
    else:
        assert asked == []  # pgvector filters in its one query: the FAISS index is never read


def test_hits_are_read_as_the_orm_reads_their_rows_and_show_without_a_query_per_hit(
    django_assert_max_num_queries,
):
    from django.utils import timezone

    from gallery.models import RESULT_FIELDS

    ids = create_images([(seed, ["zebra"]) for seed in range(1, 7)])
    pipeline.images_embed(image_ids=ids)
    Image.objects.filter(pk=ids[0]).update(taken_at=timezone.now(), taken_at_offset=120)
    rebuild.index_rebuild()
    page = ranking.images_search(vector=query_vectors.query_vector_for_text(text="zebra"), page_size=6)

    for hit in page.hits:
        stored = Image.objects.get(pk=hit.image.pk)
        for name in RESULT_FIELDS:
            assert getattr(hit.image, name) == getattr(stored, name), name
    with django_assert_max_num_queries(0):  # every field a result shows came with the read
        for hit in page.hits:
            image = hit.image
            _ = (image.file.url, image.display_url, image.taken, image.sorted_at, image.label_names)
            _ = (str(image), image.width, image.height, image.content_type, image.status)
            _ = image.failure_reason
    assert all(hit.why is not None for hit in page.hits)


def test_a_re_read_row_is_the_instance_the_orm_reads_with_those_fields():
    from gallery.models import RESULT_FIELDS
    from search.stores.result_rows import rows_by_id
    from tests.factories import create_indexed_images

    ids = create_indexed_images([(1, ["zebra"]), (2, ["moon", "apple"])])
    read = rows_by_id(ids)
    for pk in ids:
        orm = Image.objects.only(*RESULT_FIELDS).get(pk=pk)
        image = read[pk]
        assert type(image) is Image and image.pk == pk
        assert (
            (image._state.adding, image._state.db) == (orm._state.adding, orm._state.db) == (False, "default")
        )
        assert image.get_deferred_fields() == orm.get_deferred_fields()
        assert {name: getattr(image, name) for name in RESULT_FIELDS} == {
            name: getattr(orm, name) for name in RESULT_FIELDS
        }
        assert image.thumbnail.url == orm.thumbnail.url and image.label_names == orm.label_names
        image.refresh_from_db(fields=["sha256"])  # a deferred field still loads on demand
        assert image.sha256 == Image.objects.get(pk=pk).sha256
