"""Search re-reads only about a page of rows at first, and reads on when rows dropped out."""

from __future__ import annotations

import pytest

from gallery import services as gallery_services
from gallery.models import Image
from search import pipeline, query_vectors, ranking, rebuild
from tests.factories import create_images

# Each test runs against both vector stores (tests/conftest.py, vector_store).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_store")]


def test_a_page_is_filled_from_further_ranks_when_many_top_rows_were_deleted():
    ids = create_images([(seed, ["zebra"]) for seed in range(1, 31)])
    pipeline.images_embed(image_ids=ids)
    rebuild.index_rebuild()
    vector = query_vectors.query_vector_for_text(text="zebra")
    ranked = [hit.image.pk for hit in ranking.images_search(vector=vector, page_size=30).hits]
    assert sorted(ranked) == sorted(ids)

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
