"""Hands work to the background worker: the only module that sends anything to the broker.

Tasks are sent by name through the Celery app, so importing this module (gallery does) imports
neither the tasks nor the model or the index. Every send waits until the open transaction
commits: the worker never looks for rows it cannot see yet, and a rolled-back change (or a
test's transaction) sends nothing. Outside a transaction it is sent at once. A broker that is
down is logged and left to the periodic sweep, which finds the work from the rows (see
docs/architecture.md, 'Invariants').
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gallery.models import Image

from . import jobs
from .models import Calibration, DuplicateScan, IndexState, LabellingPass

logger = logging.getLogger(__name__)

# The names search.tasks registers.
EMBED_TASK = "search.tasks.embed_images"
REFRESH_TASK = "search.tasks.refresh_hybrids"
REBUILD_TASK = "search.tasks.rebuild_index"
SWEEP_TASK = "search.tasks.sweep"
DUPLICATES_TASK = "search.tasks.scan_duplicates"
TAKEN_AT_TASK = "search.tasks.backfill_taken_at"
LABELLING_TASK = "search.tasks.suggest_labels"

HYBRIDS_PER_TASK = 500  # a refresh only reads stored vectors: cheap per image

#: Seconds a rebuild request waits before running, so that a burst of uploads makes one rebuild:
#: long enough to take in the next embedding batch, short enough that an upload's last images
#: become searchable soon after (benchmarks/: ingest).
REBUILD_DELAY = 0.5
#: A rebuild waits at least this many times the last rebuild's duration (see _rebuild_countdown).
REBUILD_SPACING = 2.0
REBUILD_MAX_COUNTDOWN = 100.0
#: A labelling pass waits ten times the last pass's duration (capped): during a long ingest the
#: worker then spends at most a tenth of its time labelling, so ingest slows by under 10 %.
LABELLING_SPACING = 10.0
LABELLING_MAX_COUNTDOWN = 900.0


def embedding_enqueue(*, image_ids: Iterable[int]) -> bool:
    """Hand images to the worker in batches, stamping their ``queued_at``.

    False (logged) when the broker is down: the images stay pending with no ``queued_at`` and
    the periodic sweep hands them over later. Inside a transaction the ids are sent when it
    commits, and True means only that they will be.
    """
    ids = list(image_ids)
    return _after_commit(lambda: _embedding_send(ids))


def hybrids_refresh_enqueue(*, image_ids: Iterable[int]) -> bool:
    """Have the worker recompute these images' hybrids; False (logged) when the broker is down."""
    ids = list(image_ids)
    return _after_commit(lambda: _hybrids_refresh_send(ids))


def index_rebuild_request() -> None:
    """Ask for an index rebuild. Bursts coalesce: at most one rebuild task waits in the queue,
    and it runs ``REBUILD_DELAY`` seconds later, after the burst (later for a large
    library: see :func:`_rebuild_countdown`)."""
    jobs.request(IndexState)
    index_rebuild_schedule()


def index_rebuild_schedule() -> bool:
    """Queue a rebuild for the requests already counted, unless one is waiting (it will see
    them). True when one was queued (or will be, at commit)."""
    return _after_commit(_rebuild_send)


def duplicates_scan_request() -> None:
    """Ask for a near-duplicate scan (after a rebuild: images were added, re-embedded or
    deleted). Coalesced as rebuild requests are: at most one scan waits in the queue."""
    jobs.request(DuplicateScan)
    duplicates_scan_schedule()


def duplicates_scan_schedule() -> bool:
    """Queue a scan for the requests already counted, unless one is waiting (it will see
    them). True when one was queued (or will be, at commit)."""
    return _after_commit(_duplicates_send)


def labelling_request() -> None:
    """Ask for a labelling pass (search.labelling: suggestions and likely mislabels), after
    embedding and after label changes. Coalesced as scans are: at most one pass waits in the
    queue, spaced by twice the last pass's duration."""
    jobs.request(LabellingPass)
    labelling_schedule()


def labelling_schedule() -> bool:
    """Queue a pass for the requests already counted, unless one is waiting (it will see them)."""
    return _after_commit(_labelling_send)


def index_sweep_enqueue(*, at_start: bool = False) -> bool:
    """Run the periodic repair now (``at_start``: for a worker that starts, which picks up what
    waited for it and what a killed worker left)."""
    return _after_commit(lambda: _sweep_send(at_start))


def taken_at_backfill_enqueue() -> bool:
    """Have the worker read the date taken of images uploaded before the library kept it (a
    worker's start and an hourly schedule send it; with nothing left it finds nothing)."""

    def send() -> bool:
        try:
            _send(TAKEN_AT_TASK)
        except Exception:  # noqa: BLE001 - the hourly schedule sends it again
            logger.warning("could not enqueue the date-taken backfill", exc_info=True)
            return False
        return True

    return _after_commit(send)


def _after_commit(send: Callable[[], bool]) -> bool:
    """Run ``send`` once the open transaction commits, at once when none is open.

    Returns what ``send`` returned when it ran at once, else True: it is on its way, and a
    failure at commit is logged and recovered by the sweep like any other.
    """
    outcome: list[bool] = []
    transaction.on_commit(lambda: outcome.append(send()))
    return outcome[0] if outcome else True


def _send(task_name: str, **options) -> None:
    # No retries: a broker that is down must not hold up the request that is sending.
    current_app.send_task(task_name, retry=False, **options)


def _embedding_send(ids: Sequence[int]) -> bool:
    try:
        for chunk in _chunks(ids, settings.IMAGESEARCH_EMBED_BATCH_SIZE):
            _send(EMBED_TASK, args=[chunk])
            Image.objects.filter(pk__in=chunk).update(queued_at=timezone.now())
    except Exception:  # noqa: BLE001 - any broker failure: the sweep recovers
        logger.warning("could not enqueue embedding; the sweep will retry", exc_info=True)
        return False
    return True


def _hybrids_refresh_send(ids: Sequence[int]) -> bool:
    try:
        for chunk in _chunks(ids, HYBRIDS_PER_TASK):
            _send(REFRESH_TASK, args=[chunk])
    except Exception:  # noqa: BLE001
        logger.warning("could not enqueue a hybrid refresh; the sweep will retry", exc_info=True)
        return False
    return True


def _sweep_send(at_start: bool) -> bool:
    try:
        _send(SWEEP_TASK, kwargs={"at_start": at_start})
    except Exception:  # noqa: BLE001 - the periodic schedule runs it later anyway
        logger.warning("could not enqueue a sweep", exc_info=True)
        return False
    return True


def _rebuild_send() -> bool:
    return _claimed_send(
        IndexState,
        REBUILD_TASK,
        _rebuild_countdown(),
        failure="could not enqueue an index rebuild; the next request or the sweep asks again",
    )


def _duplicates_send() -> bool:
    # As for rebuilds: a long scan waits twice its duration, so that during a long ingest the
    # worker spends at most a third of its time scanning.
    return _claimed_send(
        DuplicateScan,
        DUPLICATES_TASK,
        _spaced_countdown(jobs.last_seconds(DuplicateScan)),
        failure="could not enqueue a near-duplicate scan; the next request asks again",
    )


def _labelling_send() -> bool:
    spaced = max(REBUILD_DELAY, LABELLING_SPACING * jobs.last_seconds(LabellingPass))
    return _claimed_send(
        LabellingPass,
        LABELLING_TASK,
        min(LABELLING_MAX_COUNTDOWN, spaced),
        failure="could not enqueue a labelling pass; the next request asks again",
    )


def _claimed_send(job: jobs.JobModel, task: str, countdown: float, *, failure: str) -> bool:
    """Send ``task`` if the job's queue slot can be claimed (search.jobs.claim): at most one such
    task waits in the queue, and it sees every request counted before it runs. A send that fails
    releases the claim for the next request or the sweep."""
    if not jobs.claim(job, countdown=countdown):
        return False  # one is already waiting; it will see this request
    try:
        _send(task, countdown=countdown)
    except Exception:  # noqa: BLE001 - broker down: released for the next request or the sweep
        jobs.release(job)
        logger.warning(failure, exc_info=True)
        return False
    return True


def _rebuild_countdown() -> float:
    """Seconds a newly scheduled rebuild waits: the configured delay, or, for a large library,
    twice as long as the last rebuild took. During a long ingest into a large index the worker
    then spends at most a third of its time rebuilding, so total ingest work stays linear in
    the number of images; a small library's rebuild (milliseconds) waits only the delay. The
    rebuild task calibrates the cut-off after the rebuild (search.calibration): that time counts
    as the rebuild's, so that the third holds for both together."""
    last = jobs.last_seconds(IndexState)
    calibrating = Calibration.objects.filter(pk=1).values_list("seconds", flat=True).first() or 0.0
    return _spaced_countdown(last + calibrating)


def _spaced_countdown(last_seconds: float) -> float:
    """The configured delay, or twice as long as the last run of the same work took (capped)."""
    return min(REBUILD_MAX_COUNTDOWN, max(REBUILD_DELAY, REBUILD_SPACING * last_seconds))


def _chunks(ids: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])
