"""Label counts for the chips: counted afresh in a small library, reused for a minute where
counting is slow (a large library), so that search pages do not count on every request."""

from __future__ import annotations

import pytest

from search.ingest import pipeline
from search.query import queries
from tests.factories import create_images

pytestmark = pytest.mark.django_db


# Each test starts with nothing remembered (tests/conftest.py) and sets the threshold itself:
# whether a real count takes more than 20 ms depends on the machine's load, not on the code.


def _ready(specs):
    pipeline.images_embed(image_ids=create_images(specs))


def test_a_count_faster_than_the_threshold_is_counted_afresh_every_time(monkeypatch):
    monkeypatch.setattr(queries, "POPULAR_LABELS_SLOW_SECONDS", float("inf"))  # every count is "fast"
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
