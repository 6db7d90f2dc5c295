"""Rebuilds of a large index are spaced out, so that a long ingest does not spend its time
rebuilding; a small one waits only the configured delay."""

from __future__ import annotations

import pytest

from search import dispatch
from search.ingest import rebuild
from search.models import IndexState

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("last_rebuild_seconds", "expected"),
    [(None, 0.5), (0.01, 0.5), (20.0, 40.0), (500.0, dispatch.REBUILD_MAX_COUNTDOWN)],
)
def test_a_rebuild_waits_the_delay_or_twice_the_last_rebuild(monkeypatch, last_rebuild_seconds, expected):
    monkeypatch.setattr(dispatch, "REBUILD_DELAY", 0.5)
    IndexState.get()
    IndexState.objects.update(seconds=last_rebuild_seconds)

    assert dispatch._rebuild_countdown() == pytest.approx(expected)


def test_a_rebuild_records_how_long_it_took_and_how_much_was_reading(settings):
    report = rebuild.index_rebuild()

    state = IndexState.get()
    assert report.built and state.seconds == pytest.approx(report.seconds)
    assert 0 <= report.read_seconds <= report.seconds
