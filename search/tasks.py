"""Celery tasks: thin, take ids, call the pipeline and the rebuild. Each is safe to run twice.

``acks_late`` + ``reject_on_worker_lost`` re-deliver a task whose worker died mid-way (killed,
out of memory); that is only allowed because every task here is idempotent by stored state.

Redis also re-delivers an ``acks_late`` message that stays unacknowledged longer than the
visibility timeout (settings: an hour, far above our longest task), even while its first run
goes on. So that such a copy never runs in parallel with the original, a run holds a lock named
after the task id for its duration, and a copy that finds it held backs off (the rebuild backs
off on the index writer lock anyway). The lock is an ``flock``: the kernel drops it when the
process dies, so a delivery re-queued after a crash does run.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from celery import shared_task
from celery.signals import celeryd_init, worker_ready
from django.conf import settings

from gallery.media import media_orphans_delete
from gallery.services import images_taken_at_backfill

from . import dispatch, encoder
from .calibration.library import library_calibrate
from .duplicates import scan as duplicates
from .file_lock import Locked, file_lock
from .ingest import pipeline, rebuild
from .ingest import sweep as sweep_module
from .labelling.passes import labelling_pass

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _sole_run(task_id: str | None) -> Iterator[bool]:
    """True while this is the only run of task ``task_id`` on the machines sharing the data
    directory; False (at once) when another run of the same delivery holds it."""
    if not task_id:  # called directly, not through the broker
        yield True
        return
    held = contextlib.ExitStack()
    try:
        # Removed as the run ends (before unlocking): a copy that opens the name later gets a
        # fresh file and runs after this run, so sequentially: harmless, the task is idempotent.
        held.enter_context(
            file_lock(Path(settings.DATA_DIR) / "task-locks" / f"{task_id}.lock", blocking=False, remove=True)
        )
    except Locked:
        logger.warning("task %s is already running (re-delivered by the broker); backing off", task_id)
        yield False
        return
    with held:
        yield True


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def embed_images(self, image_ids: list[int]) -> dict[str, int]:
    """Embed these images. Run twice: images already embedded by the current model are not
    run through the model again; deleted ids are skipped; a copy delivered while this very
    task runs backs off."""
    with _sole_run(self.request.id) as sole:
        if not sole:
            return {"embedded": 0, "refreshed": 0, "failed": 0, "skipped": len(image_ids)}
        report = pipeline.images_embed(image_ids=image_ids)
        if report.embedded or report.refreshed:
            dispatch.labelling_request()  # new vectors: new suggestions, after the burst
        return vars(report)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def refresh_hybrids(self, image_ids: list[int]) -> int:
    """Recompute hybrids from stored vectors. Run twice: the same hybrids are written again; a
    copy delivered while this very task runs backs off."""
    with _sole_run(self.request.id) as sole:
        if not sole:
            return 0
        refreshed = pipeline.hybrids_refresh(image_ids=image_ids)
        if refreshed:
            dispatch.labelling_request()  # labels changed: every label's calibration may move
        return refreshed


@shared_task(acks_late=True, reject_on_worker_lost=True)
def rebuild_index() -> dict[str, object]:
    """Write a new index generation. Run twice (or concurrently): one writer wins, the other
    backs off; the written generation always equals a rebuild from the database. A rebuild
    that served requests (a FAISS generation written, or pgvector's requests counted) asks for a
    near-duplicate scan and calibrates the cut-off (search.calibration; bounded by its sample,
    and a failure there is logged and shown, never the rebuild's): images came, went or changed,
    on either store."""
    report = rebuild.index_rebuild()
    if report.served:
        dispatch.duplicates_scan_request()
        library_calibrate()
    return vars(report)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def scan_duplicates() -> dict[str, object]:
    """Find and store the near-duplicate groups. Run twice (or concurrently): one scans, the
    other backs off, and a scan of an unchanged library does nothing; the stored groups always
    equal a scan of the rows."""
    return vars(duplicates.duplicates_scan())


@shared_task(acks_late=True, reject_on_worker_lost=True)
def suggest_labels() -> dict[str, object]:
    """Suggest labels and list likely mislabels (search.labelling). Run twice (or concurrently):
    one runs, the other backs off; the stored rows always equal a pass over the rows."""
    return vars(labelling_pass())


@shared_task
def sweep(at_start: bool = False) -> dict[str, int]:
    """Repair from the rows (search.ingest.sweep.index_sweep). Run twice: the work it hands over is
    idempotent, so a second run only sends messages that find nothing left to do."""
    return sweep_module.index_sweep(at_start=at_start)


@shared_task
def sweep_media() -> int:
    """Delete media files that no image row names (gallery.media). Run twice: the second run
    finds nothing to delete."""
    return media_orphans_delete()


@shared_task
def backfill_taken_at() -> int:
    """Read the date taken of images uploaded before the library kept it, some thousands per
    run, sending itself again while any are left. Run twice: rows read are marked, so the second
    run reads the rest or nothing."""
    done, more = images_taken_at_backfill()
    if more:
        dispatch.taken_at_backfill_enqueue()
    return done


@celeryd_init.connect
def _refuse_an_unusable_vector_store(**kwargs) -> None:
    # A worker does not run Django's system checks: IMAGESEARCH_VECTOR_BACKEND=pgvector on a
    # database without pgvector stops it here, with what to install, before it takes a task.
    from .stores import checks

    checks.refuse_unless_usable()


@celeryd_init.connect
def _record_concurrency(sender=None, conf=None, instance=None, options=None, **kwargs) -> None:
    # Torch threads per process = cores / processes (see search.encoder.threads).
    concurrency = (options or {}).get("concurrency") or getattr(conf, "worker_concurrency", None)
    if concurrency:
        encoder.set_worker_processes(int(concurrency))


@worker_ready.connect
def _sweep_at_start(sender=None, **kwargs) -> None:
    # Images uploaded while no worker (or no broker) was running get picked up right away.
    dispatch.index_sweep_enqueue(at_start=True)
    dispatch.taken_at_backfill_enqueue()
