"""Label counts for the chips: counted afresh in a small library, reused for a minute where
counting is slow (a large library), so that search pages do not count on every request."""

from __future__ import annotations

import pytest

from search import pipeline, queries
from tests.factories import create_images

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _forget_counts():
    queries._popular_labels_memo.clear()
    yield
    queries._popular_labels_memo.clear()


def _ready(specs):
    pipeline.images_embed(image_ids=create_images(specs))


def test_a_small_library_is_counted_afresh_every_time():
    _ready([(1, ["zebra"])])
    assert queries.popular_labels() == [("zebra", 1)]

    _ready([(2, ["zebra"]), (3, ["sunset"])])

    assert queries.popular_labels() == [("zebra", 2), ("sunset", 1)]


def test_slow_counts_are_reused_until_they_are_a_minute_old(monkeypatch):
    monkeypatch.setattr(queries, "POPULAR_LABELS_SLOW_SECONDS", -1.0)  # every count is "slow"
    _ready([(1, ["zebra"])])
    assert queries.popular_labels() == [("zebra", 1)]
    _ready([(2, ["sunset"])])

    assert queries.popular_labels() == [("zebra", 1)]  # reused, not counted again

    clock = queries.time.monotonic() + queries.POPULAR_LABELS_REUSE_SECONDS + 1
    monkeypatch.setattr(queries.time, "monotonic", lambda: clock)
    assert sorted(queries.popular_labels()) == [("sunset", 1), ("zebra", 1)]
