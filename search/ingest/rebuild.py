"""Writing index generations from the database, and the periodic repair (the sweep).

The index is derived from the rows: a rebuild reads every searchable row's hybrid vector and
writes a new generation, so running it twice, or after a crash, gives the same index (see
docs/architecture.md, 'Invariants').
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from gallery.models import Image, Label

from .. import dispatch, encoder, status
from ..models import DuplicateScan, IndexState, LabellingPass
from ..stores import faiss as search_index
from ..stores import pgvector as vectorstore
from . import claims, pipeline

logger = logging.getLogger(__name__)


@dataclass
class RebuildReport:
    built: bool
    generation: int | None = None
    count: int = 0
    seconds: float = 0.0
    read_seconds: float = 0.0  # of ``seconds``: reading the vectors from the database


def index_rebuild() -> RebuildReport:
    """Write a new index generation from the ready rows, unless another process is writing.

    One writer at a time (a file lock): a second caller backs off at once; the writer checks at
    the end whether requests arrived while it ran and schedules one more rebuild if so.
    """
    if vectorstore.enabled():
        # Nothing to build: the vectors are written with the rows. Requests count as served.
        IndexState.get()
        IndexState.objects.filter(pk=1).update(
            built_request=F("requested"), rebuild_queued=False, last_error=""
        )
        logger.info("rebuild requested: %s", vectorstore.NOTHING_TO_REBUILD)
        return RebuildReport(built=False)
    started = time.monotonic()
    directory = status.index_dir()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with search_index.writer_lock(directory, blocking=False):
            state = IndexState.get()
            seen = state.requested
            # New requests from here on schedule another rebuild.
            IndexState.objects.filter(pk=1).update(rebuild_queued=False)
            model = encoder.model_name()
            ids, vectors = index_vectors_read(model=model)
            read_seconds = time.monotonic() - started
            dim = vectors.shape[1] if len(ids) else _known_dimension()
            if not len(ids):
                vectors = np.zeros((0, dim), dtype=np.float32)
            manifest = search_index.write_generation(
                directory,
                ids,
                vectors,
                model=model,
                image_weight=settings.IMAGESEARCH_IMAGE_WEIGHT,
                kind=settings.IMAGESEARCH_INDEX_KIND,
                flat_max_vectors=search_index.AUTO_FLAT_MAX_VECTORS,
                **recall_probes_read(model=model, ids=ids, dim=dim),
            )
            seconds = time.monotonic() - started
            IndexState.objects.filter(pk=1).update(
                built_request=seen,
                last_rebuild_at=timezone.now(),
                last_rebuild_seconds=seconds,
                last_error="",
            )
    except search_index.IndexLocked:
        logger.info("another process is rebuilding the index; backing off")
        # Release the claim: the writer checks at its end whether requests arrived while it
        # ran and schedules one more rebuild, which this claim would otherwise block.
        IndexState.objects.filter(pk=1).update(rebuild_queued=False)
        return RebuildReport(built=False)
    if IndexState.objects.filter(pk=1, requested__gt=seen).exists():
        dispatch.index_rebuild_schedule()
    logger.info(
        "index generation %s: %d vectors in %.2fs (%.2fs reading the database)",
        manifest.generation,
        len(ids),
        seconds,
        read_seconds,
    )
    return RebuildReport(
        built=True, generation=manifest.generation, count=len(ids), seconds=seconds, read_seconds=read_seconds
    )


def index_vectors_read(*, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, hybrid vectors) of the searchable rows, in one pass over a chunked cursor."""
    return vectors_read(Image.objects.searchable(model).order_by(), "hybrid_vector", model=model)


def vectors_read(queryset: QuerySet[Image], field: str, *, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors in ``field``) of the rows of ``queryset``, in its order, in one pass over a
    chunked cursor.

    A plain cursor, a chunk of rows at a time turned into one array: the ORM's per-row
    iteration and a copy per blob cost a large share of a rebuild at a million rows.
    ``chunked_cursor`` is server-side on PostgreSQL, so memory stays at the vectors plus one
    chunk of rows.
    """
    query = queryset.values_list("pk", field).query
    sql, params = query.sql_with_params()
    id_parts: list[np.ndarray] = []
    vector_parts: list[np.ndarray] = []
    sizes: set[int] = set()
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(10_000):
            blobs = [blob for _, blob in rows]
            sizes.update(len(blob) for blob in blobs)
            if len(sizes) > 1:
                raise search_index.SearchIndexError(
                    f"{field} of model {model!r} have different sizes {sorted(sizes)}: re-embed them"
                )
            id_parts.append(np.fromiter((pk for pk, _ in rows), dtype=np.int64, count=len(rows)))
            vector_parts.append(np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(rows), -1))
    if not id_parts:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(id_parts), np.concatenate(vector_parts).astype(np.float32, copy=False)


def recall_probes_read(*, model: str, ids: np.ndarray, dim: int) -> dict[str, np.ndarray | None]:
    """Queries an approximate index is tuned on, made from the library itself: the labels' own
    text vectors (text queries, with their modality gap) and the image vectors of a seeded
    sample of the indexed rows (image queries). Read only when an approximate kind is built."""
    requested = settings.IMAGESEARCH_INDEX_KIND
    small = len(ids) <= search_index.AUTO_FLAT_MAX_VECTORS
    if requested == "flat" or (requested == "auto" and small):
        return {"text_queries": None, "image_queries": None}
    size = dim * 4
    labels = Label.objects.filter(vector_model=model, vector__isnull=False).order_by("pk")
    texts = [bytes(b) for b in labels.values_list("vector", flat=True)[:10_000] if b and len(b) == size]
    sample = np.random.default_rng(0).choice(ids, min(len(ids), 256), replace=False)
    images = [
        bytes(b)
        for b in Image.objects.filter(pk__in=sample.tolist()).values_list("image_vector", flat=True)
        if b is not None and len(b) == size
    ]

    def matrix(blobs: list[bytes]) -> np.ndarray | None:
        if not blobs:
            return None
        return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)

    return {"text_queries": matrix(texts), "image_queries": matrix(images)}


def index_sweep(*, at_start: bool = False) -> dict[str, int]:
    """Periodic repair, from the rows (every ``IMAGESEARCH_SWEEP_INTERVAL`` seconds, and when a
    worker starts). Each step is safe to repeat: the work it hands over is idempotent.

    - Images claimed by a run that is gone (killed, or silent past the claim timeout) are freed
      and enqueued again, as are pending images no run claimed for ``IMAGESEARCH_PENDING_TIMEOUT``
      (or never handed to the broker). When a worker starts (``at_start``), every pending image
      no live run holds is enqueued again: a worker killed a moment before it claimed its rows
      left its messages unacknowledged in the broker, where they stay invisible for the
      visibility timeout. An image whose message was only waiting gets a second one, which
      finds it embedded and does nothing.
    - Hybrids older than their labels' last change (a refresh lost with the broker) are refreshed,
      and so are hybrids made from label vectors of another text model (the setting changed).
    - A rebuild that stayed queued well past its due time (its message was lost) is sent again,
      and one is scheduled when the index is behind the database.
    """
    now = timezone.now()
    lost = claims.claims_free_lost(Image.objects.all(), now=now)
    timeout = timedelta(seconds=settings.IMAGESEARCH_PENDING_TIMEOUT)
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
    if LabellingPass.objects.filter(
        pk=1, queued=False, running_since__isnull=True, requested__gt=F("done_request")
    ).exists():
        dispatch.labelling_schedule()
    if vectorstore.enabled():
        # Ready rows without their vector (embedded while FAISS was the store): written from
        # the stored hybrids, a bounded number per sweep. Rebuild requests are served at once
        # (a lost rebuild message would otherwise leave the search page saying "updating").
        backfilled = vectorstore.vectors_backfill(encoder.model_name())
        index_rebuild()
        return {
            "requeued": len(stuck),
            "claims_freed": len(lost),
            "hybrids_refreshed": len(stale_hybrids),
            "rebuild_scheduled": 0,
            "vectors_backfilled": backfilled,
        }
    state = IndexState.get()
    due = state.rebuild_due_at or state.queued_at
    stale_queue = bool(state.rebuild_queued and due and due < grace)
    if stale_queue:
        IndexState.objects.filter(pk=1).update(rebuild_queued=False)
    # A scan requested while the broker was down (or lost with its message) is asked again.
    scan_behind = DuplicateScan.objects.filter(
        pk=1, scan_queued=False, running_since__isnull=True, requested__gt=F("scanned_request")
    ).exists()
    if scan_behind:
        dispatch.duplicates_scan_schedule()
    rebuild = False
    if status.index_behind() or stale_queue:
        rebuild = dispatch.index_rebuild_schedule()
    return {
        "requeued": len(stuck),
        "claims_freed": len(lost),
        "hybrids_refreshed": len(stale_hybrids),
        "text_model_refreshed": text_model_refreshed,
        "rebuild_scheduled": int(rebuild),
        "duplicates_scan_scheduled": int(scan_behind),
    }


def _known_dimension() -> int:
    """The model's dimension, for an empty index (loads the model if needed)."""
    try:
        return encoder.dimension()
    except encoder.ModelUnavailable:
        manifest = search_index.read_current_manifest(status.index_dir())
        return manifest.dim if manifest else 1
