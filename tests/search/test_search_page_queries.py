"""What a search page reads from the database: a bounded number of queries, the notices of
the page read in one of them, and still read afresh on every page."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from gallery import services as gallery_services
from gallery.models import Image
from search import dispatch, status
from search.models import IndexState
from tests.factories import create_images, indexed_library

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_store")]

# The rows of the hits, their label names, the notices, the label counts of the chips (counted
# afresh in the tests: tests/conftest.py), the vectors that explain each hit's score (its image
# vector, its labels' vectors): six on both stores, and one to spare. A query per hit or per
# notice would exceed it.
MAX_SEARCH_PAGE_QUERIES = 7


@pytest.fixture
def library() -> dict[str, list[int]]:
    return indexed_library([(1, ["sunset"]), (2, ["sunset", "bicycle"]), (3, ["zebra"])])


def test_a_search_page_reads_the_database_a_bounded_number_of_times(client, library):
    client.get("/", {"q": "zebra"})  # the query's vector is encoded once and kept
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/", {"q": "zebra"})
    assert response.status_code == 200
    assert len(queries.captured_queries) <= MAX_SEARCH_PAGE_QUERIES, [q["sql"] for q in queries]


def test_the_notices_are_read_in_one_query(library):
    dispatch.index_rebuild_request()  # the index state's row exists, as in any used library
    with CaptureQueriesContext(connection) as queries:
        status.search_notices()
    assert len(queries.captured_queries) == 1


def test_pending_images_are_announced_on_the_next_page_without_an_index_state(client, library):
    IndexState.objects.all().delete()  # a library where no rebuild was ever asked for
    create_images([(20, ["zebra"])])
    assert status.search_notices()[0].startswith("1 image(s) are still being indexed")
    assert b"1 image(s) are still being indexed" in client.get("/", {"q": "zebra"}).content


def test_the_behind_notice_appears_with_the_request_and_goes_with_the_rebuild(client, library):
    assert status.BEHIND_NOTICE not in status.search_notices()
    image = Image.objects.get(pk=library["zebra"][0])
    gallery_services.image_relabel(image=image, names=["zebra", "stripes"])
    dispatch.index_rebuild_request()
    assert status.BEHIND_NOTICE in status.search_notices()
    state = IndexState.get()
    IndexState.objects.update(done_request=state.requested)  # what a rebuild records
    assert status.BEHIND_NOTICE not in status.search_notices()


def test_pending_images_take_the_place_of_the_behind_notice(library):
    dispatch.index_rebuild_request()
    create_images([(21, ["zebra"]), (22, ["sunset"])])
    notices = status.search_notices()
    assert notices[0].startswith("2 image(s) are still being indexed")
    assert status.BEHIND_NOTICE not in notices


def test_after_the_masters_warm_up_the_first_search_page_counts_no_labels(client, library, monkeypatch):
    """What a web server's master does before it forks (imagesearch.gunicorn_conf): its workers'
    first pages reuse its label counts where counting is slow, instead of each counting again."""
    from imagesearch import gunicorn_conf
    from search.query import label_counts

    monkeypatch.setattr(label_counts, "POPULAR_LABELS_SLOW_SECONDS", -1.0)  # every count is "slow"
    gunicorn_conf.first_request_warm()
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/", {"q": "zebra"})
    assert response.status_code == 200
    assert b"sunset" in response.content  # a chip of the library's labels, from the warm-up's count
    assert not [q["sql"] for q in queries if "COUNT(" in q["sql"] and "gallery_label" in q["sql"]]
