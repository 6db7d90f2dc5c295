"""The migration that makes the rebuild, the near-duplicate scan and the labelling pass rows of one
job table carries every request count, queue claim and last result over, so that a running
deployment neither loses a queued job nor scans or labels an unchanged library again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.support.migrations import migrate, migrate_to_the_latest

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("search", "0010_calibration")
AFTER = ("search", "0011_jobs")


def test_the_three_jobs_keep_their_requests_claims_and_last_results():
    old = migrate(BEFORE)
    queued = timezone.now() - timedelta(minutes=5)
    old.get_model("search", "IndexState").objects.create(
        pk=1, requested=7, built_request=5, rebuild_queued=True, queued_at=queued, last_rebuild_seconds=1.5
    )
    old.get_model("search", "DuplicateScan").objects.create(
        pk=1, requested=3, scanned_request=3, number=4, images=10, threshold=0.95, model="m", fingerprint="f"
    )
    old.get_model("search", "LabellingPass").objects.create(
        pk=1, requested=2, done_request=1, queued=True, due_at=queued, suggestions=6, note="why"
    )
    try:
        jobs = {job.name: job for job in migrate(AFTER).get_model("search", "Job").objects.all()}
        rebuild, scan, labelling = jobs["rebuild"], jobs["duplicates"], jobs["labelling"]
        # A rebuild queued before its due time was kept is due when it was queued: still recoverable.
        assert (rebuild.requested, rebuild.done_request, rebuild.queued) == (7, 5, True)
        assert (rebuild.due_at, rebuild.seconds) == (queued, 1.5)
        assert (scan.requested, scan.done_request, scan.queued) == (3, 3, False)
        assert scan.result == {"number": 4, "images": 10, "threshold": 0.95, "model": "m", "fingerprint": "f"}
        assert (labelling.done_request, labelling.queued, labelling.due_at) == (1, True, queued)
        assert labelling.result["suggestions"] == 6 and labelling.result["note"] == "why"
    finally:
        migrate_to_the_latest()
