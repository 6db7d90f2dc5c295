"""Near-duplicate scans follow changes to the library by themselves, on both vector stores: an
upload is embedded by a real worker, whose own rebuild request (served by a new FAISS generation,
or counted as served by pgvector, which has nothing to write) asks for the scan that groups the
copies. Nobody presses *Scan now*."""

from __future__ import annotations

import pytest
from django.conf import settings

from search.duplicates import scan as duplicates
from search.models import DuplicateScan, IndexState
from tests.conftest import require_service
from tests.support import env
from tests.support.near_duplicates import TEST_THRESHOLD, copies, store
from tests.support.waiting import wait_for, wait_until_indexed
from tests.support.workers import clear_shared_index, wait_for_start_up_sweep

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("vector_store"),
]


@pytest.fixture
def store_worker(vector_store, start_worker, transactional_db):
    """One real worker (solo pool) on the shared Redis, serving this test's vector store."""
    require_service(env.redis_available(), "Redis at 127.0.0.1:6379")
    clear_shared_index()
    worker = start_worker(
        env_overrides={
            "IMAGESEARCH_VECTOR_BACKEND": vector_store,
            "IMAGESEARCH_DUPLICATE_THRESHOLD": str(TEST_THRESHOLD),
        }
    )
    return wait_for_start_up_sweep(worker)


def test_an_upload_of_copies_is_scanned_for_near_duplicates_without_anyone_asking(store_worker, vector_store):
    assert settings.IMAGESEARCH_VECTOR_BACKEND == vector_store
    assert DuplicateScan.get().number == 0  # nothing scanned before the upload
    ids = store(copies("kestrel"), "kestrel")
    wait_until_indexed(ids.values())

    def scanned() -> bool:
        return DuplicateScan.get().number >= 1 and not DuplicateScan.get().behind_requests

    wait_for(scanned, timeout=90, what="the near-duplicate scan the worker's rebuild asks for")
    assert not IndexState.get().behind_requests  # the rebuild request was served
    groups = [{m.image_id for m in group.members.all()} for group in duplicates.groups_listed()]
    assert groups == [set(ids.values())]
