"""The exact scans of stored hybrids (no servable index generation; narrow label filters) read
and score a bounded chunk of rows at a time and give the index's order; the scan of every row
holds a model slot, so that concurrent ones are refused at once instead of run side by side;
a label filter whose images lie far from the query is scanned once instead of widening the
index request towards the whole index."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from django.conf import settings

from search.errors import SearchUnavailable
from search.query import ranking, slots
from search.query.vectors import query_vector_for_text
from search.stores import base as store_base
from search.stores import faiss as search_index
from search.stores import faiss_nearest

pytestmark = pytest.mark.django_db


def _no_generation() -> None:
    shutil.rmtree(settings.INDEX_DIR, ignore_errors=True)
    search_index.reset_readers()


def test_the_scan_of_every_row_gives_the_index_order_one_small_chunk_at_a_time(library, monkeypatch):
    vector = query_vector_for_text(text="zebra")
    served = ranking.images_search(vector=vector, page_size=5)
    _no_generation()
    monkeypatch.setattr(faiss_nearest, "SCAN_CHUNK", 2)  # five rows: three reads
    scanned = ranking.images_search(vector=vector, page_size=5)
    assert faiss_nearest.FROM_ROWS_NOTICE in scanned.notices
    assert [h.image.pk for h in scanned.hits] == [h.image.pk for h in served.hits]
    assert np.allclose([h.score for h in scanned.hits], [h.score for h in served.hits], atol=1e-4)


def test_the_scan_of_every_row_needs_a_model_slot(library, settings):
    vector = query_vector_for_text(text="zebra")
    _no_generation()
    settings.IMAGESEARCH_MODEL_SLOTS = 1
    settings.IMAGESEARCH_MODEL_SLOT_WAIT = 0.05
    slots.reset()
    try:
        with slots.model_slot(), pytest.raises(SearchUnavailable, match="Search is busy"):
            ranking.images_search(vector=vector)
        assert len(ranking.images_search(vector=vector).hits) == 5
    finally:
        slots.reset()


def test_a_wide_filter_far_from_the_query_is_scanned_once_not_widened(library, monkeypatch):
    vector = query_vector_for_text(text="bicycle")
    monkeypatch.setattr(store_base, "EXACT_FILTER_LIMIT", 1)  # the two sunsets count as "wide"
    asked: list[bool] = []

    def first_answer_short(*args, widen: bool, **kwargs) -> list:
        # The index's first answer holds none of the filter's images (they lie far from the
        # query): asking it again for four times as many is what this must not do.
        asked.append(widen)
        return []

    monkeypatch.setattr(faiss_nearest, "_nearest_from_index", first_answer_short)
    hits = ranking.images_search(vector=vector, labels=["sunset"], page_size=2).hits
    assert asked == [False]
    assert {h.image.pk for h in hits} == set(library["sunset"])
