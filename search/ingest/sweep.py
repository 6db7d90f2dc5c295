"""The periodic repair (the sweep): everything the broker may have lost, found again from the rows."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from gallery.models import Image

from .. import dispatch, encoder, jobs
from ..calibration.library import library_calibrate
from ..models import Calibration, DuplicateScan, LabellingPass
from ..stores.selection import vector_store
from . import claims, pipeline

#: Seconds after which the sweep enqueues again a pending image no run has claimed: its message may
#: still wait in the queue behind others, and re-sending it earlier only doubles it.
PENDING_TIMEOUT = 300


def index_sweep(*, at_start: bool = False) -> dict[str, int]:
    """Periodic repair, from the rows (every ``SWEEP_INTERVAL`` seconds of the settings, and when
    a worker starts). Each step is safe to repeat: the work it hands over is idempotent.

    - Images claimed by a run that is gone (killed, or silent past the claim timeout) are freed
      and enqueued again, as are pending images no run claimed for ``PENDING_TIMEOUT``
      (or never handed to the broker). When a worker starts (``at_start``), every pending image
      no live run holds is enqueued again: a worker killed a moment before it claimed its rows
      left its messages unacknowledged in the broker, where they stay invisible for the
      visibility timeout. An image whose message was only waiting gets a second one, which
      finds it embedded and does nothing.
    - Hybrids older than their labels' last change (a refresh lost with the broker) are refreshed,
      and so are hybrids made from label vectors of another text model (the setting changed).
    - The store's own repair (:meth:`VectorStore.sweep`): FAISS sends a rebuild whose message was
      lost and schedules one when the index is behind; pgvector writes missing vectors and
      serves rebuild requests.
    - A near-duplicate scan whose message was lost is asked again.
    - The cut-off is calibrated (search.calibration) when the store served rebuild requests here,
      as after a rebuild task, and when a worker starts on a library never calibrated (indexed
      before calibration existed: no rebuild may come for a long time).
    """
    now = timezone.now()
    lost = claims.claims_free_lost(Image.objects.all(), now=now)
    timeout = timedelta(seconds=PENDING_TIMEOUT)
    stuck = list(
        Image.objects.pending()
        .filter(claimed_by="")
        .filter(
            Q() if at_start else Q(pk__in=lost) | Q(queued_at__isnull=True) | Q(queued_at__lt=now - timeout)
        )
        .values_list("pk", flat=True)[:50_000]
    )
    if stuck:
        dispatch.embedding_enqueue(image_ids=stuck)
    # A text model switched since the hybrids were made: stamped now, so not sent twice below.
    text_model_refreshed = pipeline.hybrids_text_model_refresh()
    grace = claims.claim_stale_before(now)
    stale_hybrids = list(
        Image.objects.ready().hybrids_stale(changed_before=grace).values_list("pk", flat=True)[:50_000]
    )
    if stale_hybrids:
        # Stamped again, so that while the refresh waits in a long queue it is re-sent at most
        # once per claim timeout, not at every sweep.
        Image.objects.filter(pk__in=stale_hybrids).update(labels_changed_at=now)
        dispatch.hybrids_refresh_enqueue(image_ids=stale_hybrids)
    # A labelling pass requested while the broker was down (or lost with its message), either store.
    if jobs.waiting_unsent(LabellingPass):
        dispatch.labelling_schedule()
    figures = vector_store().sweep(stale_before=grace)
    # A scan requested while the broker was down (or lost with its message) is asked again, and
    # one is asked when the store served rebuild requests here (their message was lost).
    scan_behind = jobs.waiting_unsent(DuplicateScan)
    served = figures.pop("rebuild_served", 0)
    if served:
        dispatch.duplicates_scan_request()
    elif scan_behind:
        dispatch.duplicates_scan_schedule()
    calibrated = 0
    if served or (at_start and _never_calibrated()):
        calibrated = int(library_calibrate().ran)
    return {
        "requeued": len(stuck),
        "claims_freed": len(lost),
        "hybrids_refreshed": len(stale_hybrids),
        "text_model_refreshed": text_model_refreshed,
        **figures,
        "duplicates_scan_scheduled": int(scan_behind),
        "calibrated": calibrated,
    }


def _never_calibrated() -> bool:
    """Searchable rows, and no calibration ever made (nor one that failed: the next rebuild retries)."""
    made = Calibration.objects.filter(Q(calibrated_at__isnull=False) | ~Q(last_error=""), pk=1).exists()
    return not made and Image.objects.searchable(encoder.model_name()).exists()
