"""Label counts for the chips: counted afresh in a small library, reused for a minute where
counting is slow (a large library), so that search pages do not count on every request; an
expired count keeps serving while the process counts again, and no page waits for it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from search.ingest import pipeline
from search.query import label_counts, queries
from tests.factories import create_images

pytestmark = pytest.mark.django_db


# Each test starts with nothing remembered (tests/conftest.py) and sets the threshold itself:
# whether a real count takes more than 20 ms depends on the machine's load, not on the code.


def _ready(specs):
    pipeline.images_embed(image_ids=create_images(specs))


def _expire(monkeypatch) -> None:
    clock = label_counts.time.monotonic() + label_counts.POPULAR_LABELS_REUSE_SECONDS + 1
    monkeypatch.setattr(label_counts.time, "monotonic", lambda: clock)


def test_a_count_faster_than_the_threshold_is_counted_afresh_every_time(monkeypatch):
    monkeypatch.setattr(label_counts, "POPULAR_LABELS_SLOW_SECONDS", float("inf"))  # every count is "fast"
    _ready([(1, ["zebra"])])
    assert queries.popular_labels() == [("zebra", 1)]

    _ready([(2, ["zebra"]), (3, ["sunset"])])

    assert queries.popular_labels() == [("zebra", 2), ("sunset", 1)]


def test_slow_counts_are_reused_until_they_are_a_minute_old(monkeypatch):
    monkeypatch.setattr(label_counts, "POPULAR_LABELS_SLOW_SECONDS", -1.0)  # every count is "slow"
    _ready([(1, ["zebra"])])
    assert queries.popular_labels() == [("zebra", 1)]
    _ready([(2, ["sunset"])])

    with CaptureQueriesContext(connection) as reads:
        assert queries.popular_labels() == [("zebra", 1)]  # reused, not counted again
    assert reads.captured_queries == []


@pytest.mark.django_db(transaction=True)  # the count runs in a thread of its own, on its own connection
def test_an_expired_count_serves_while_it_is_counted_again_then_the_new_count_serves(monkeypatch):
    monkeypatch.setattr(label_counts, "POPULAR_LABELS_SLOW_SECONDS", -1.0)
    _ready([(1, ["zebra"])])
    assert queries.popular_labels() == [("zebra", 1)]
    _ready([(2, ["sunset"])])
    _expire(monkeypatch)

    assert queries.popular_labels() == [("zebra", 1)]  # no page waits for the count
    label_counts.recount_wait(timeout=30)

    assert sorted(queries.popular_labels()) == [("sunset", 1), ("zebra", 1)]


def test_the_chips_and_the_start_page_share_one_count(monkeypatch):
    monkeypatch.setattr(label_counts, "POPULAR_LABELS_SLOW_SECONDS", -1.0)
    _ready([(i, [f"label{i:02d}"]) for i in range(1, 31)])
    start_page = queries.popular_labels(24)

    with CaptureQueriesContext(connection) as reads:
        chips = queries.popular_labels(12)
    assert reads.captured_queries == []
    assert chips == start_page[:12]
    assert len(start_page) == 24


def test_a_count_made_before_the_first_page_serves_it(monkeypatch):
    """What a web server's master process does before it forks its workers."""
    monkeypatch.setattr(label_counts, "POPULAR_LABELS_SLOW_SECONDS", -1.0)
    _ready([(1, ["zebra"]), (2, ["zebra"])])
    label_counts.popular_labels_count()

    with CaptureQueriesContext(connection) as reads:
        assert queries.popular_labels(12) == [("zebra", 2)]
    assert reads.captured_queries == []
