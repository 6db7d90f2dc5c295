"""Embedding images, rebuilding the index and answering queries.

Celery tasks and views are thin interfaces to these functions. Everything here is safe to run
twice: state lives in the database (invariant 4), vectors in the index are derived from rows
(invariant 1), and results are re-read from the database (invariant 3).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Max, Q, QuerySet, prefetch_related_objects
from django.utils import timezone

from gallery.models import Image, Label
from gallery.validation import THUMBNAIL_SIZE, InvalidImage, validate_image_bytes

from . import embedding
from . import index as search_index
from .models import IndexState

logger = logging.getLogger(__name__)

MAX_RESULTS = 1000  # deepest result a query pages to
MAX_QUERY_CHARS = 2000  # CLIP reads 77 tokens; a longer text is cut before tokenising


def index_dir() -> Path:
    return Path(settings.INDEX_DIR)


def _chunks(ids: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


# --- Enqueueing (called after commit) ----------------------------------------------------------


def enqueue_embedding(image_ids: Sequence[int]) -> bool:
    """Hand ids to the worker in batches. Returns False (and logs) if the broker is down: the
    images stay pending with no ``queued_at`` and the periodic sweep enqueues them later."""
    from . import tasks

    try:
        for chunk in _chunks(list(image_ids), settings.IMAGESEARCH_EMBED_BATCH_SIZE):
            tasks.embed_images.apply_async(args=[chunk], retry=False)
            Image.objects.filter(pk__in=chunk).update(queued_at=timezone.now())
    except Exception:  # noqa: BLE001 - any broker failure: the sweep recovers
        logger.warning("could not enqueue embedding; the sweep will retry", exc_info=True)
        return False
    return True


def enqueue_hybrid_refresh(image_ids: Sequence[int]) -> bool:
    from . import tasks

    try:
        for chunk in _chunks(list(image_ids), 500):
            tasks.refresh_hybrids.apply_async(args=[chunk], retry=False)
    except Exception:  # noqa: BLE001
        logger.warning("could not enqueue a hybrid refresh; the sweep will retry", exc_info=True)
        return False
    return True


# --- Embedding ---------------------------------------------------------------------------------


def _open_for_embedding(image: Image) -> Any:
    """Decode an image for the model, as cheaply as possible.

    For a large original, the thumbnail (long side 512, made when the upload was decoded)
    already holds more pixels than CLIP reads (224 short side), so it is decoded instead;
    otherwise the original is, with JPEG draft mode shrinking it while decoding.
    """
    from PIL import Image as PILImage
    from PIL import ImageOps

    from gallery.validation import to_rgb

    long_side, short_side = max(image.width, image.height), min(image.width, image.height)
    if image.thumbnail and long_side > THUMBNAIL_SIZE and short_side * THUMBNAIL_SIZE / long_side >= 224:
        with image.thumbnail.open("rb") as fh:
            pil = PILImage.open(fh)
            pil.load()
        return pil.convert("RGB")
    with image.file.open("rb") as fh:
        pil = PILImage.open(fh)
        if pil.format == "JPEG":
            pil.draft("RGB", (448, 448))
        pil.load()
        try:
            pil = ImageOps.exif_transpose(pil)
        except Exception:  # noqa: BLE001
            pass
        return to_rgb(pil)


def label_vectors_ensure(labels: Iterable[Label]) -> dict[int, np.ndarray]:
    """Text vectors for labels, computed once per label and cached on the row."""
    model = embedding.model_name()
    labels = list({label.pk: label for label in labels}.values())
    missing = [label for label in labels if not label.has_vector_for(model)]
    if missing:
        vectors = embedding.encode_texts([label.name for label in missing])
        for label, vector in zip(missing, vectors, strict=True):
            Label.objects.filter(pk=label.pk, name=label.name).update(
                vector=embedding.to_bytes(vector), vector_model=model
            )
            label.vector, label.vector_model = embedding.to_bytes(vector), model
    return {label.pk: embedding.from_bytes(label.vector) for label in labels}


def _hybrid_for(image: Image, image_vector: np.ndarray, label_vectors: dict[int, np.ndarray]) -> np.ndarray:
    parts = [label_vectors[label.pk] for label in image.labels.all()]
    return embedding.combine(image_vector, parts, settings.IMAGESEARCH_IMAGE_WEIGHT)


@dataclass
class EmbedReport:
    embedded: int = 0
    refreshed: int = 0
    failed: int = 0
    skipped: int = 0


def images_embed(*, image_ids: Sequence[int]) -> EmbedReport:
    """Embed these images (those not already embedded by the current model), store their image
    and hybrid vectors, mark them ready or failed, and request an index rebuild.

    Idempotent: an image whose image vector was made by the current model is not run through
    the model again; only its hybrid is refreshed if the labels or the weight changed.
    """
    report = EmbedReport()
    model = embedding.model_name()
    weight = settings.IMAGESEARCH_IMAGE_WEIGHT
    images = list(Image.objects.filter(pk__in=image_ids).prefetch_related("labels"))
    report.skipped = len(set(image_ids)) - len(images)  # deleted meanwhile: nothing to do
    if not images:
        return report
    try:
        embedding.get_model()
    except embedding.ModelUnavailable as exc:
        for image in images:
            if image.status != Image.Status.READY:
                _mark_failed(image.pk, str(exc))
                report.failed += 1
        return report

    todo = [i for i in images if i.embedding_model != model or i.image_vector is None]
    done = [i for i in images if i not in todo]
    decoded: list[tuple[Image, Any]] = []
    for image in todo:
        try:
            decoded.append((image, _open_for_embedding(image)))
        except (OSError, ValueError, InvalidImage) as exc:
            _mark_failed(image.pk, f"The image file could not be read: {exc}")
            report.failed += 1

    label_vectors = label_vectors_ensure(label for i in images for label in i.labels.all())
    now = timezone.now()
    if decoded:
        vectors = embedding.encode_images(
            [pil for _, pil in decoded], batch_size=settings.IMAGESEARCH_EMBED_BATCH_SIZE
        )
        for (image, _), vector in zip(decoded, vectors, strict=True):
            hybrid = _hybrid_for(image, vector, label_vectors)
            _mark_ready(
                image.pk, hybrid, weight, now, image_vector=embedding.to_bytes(vector), embedding_model=model
            )
            report.embedded += 1
    for image in done:
        hybrid = _hybrid_for(image, embedding.from_bytes(image.image_vector), label_vectors)
        _mark_ready(image.pk, hybrid, weight, now)
        report.refreshed += 1
    if report.embedded or report.refreshed:
        request_rebuild()
    return report


def _mark_ready(image_id: int, hybrid: np.ndarray, weight: float, now: Any, **vector_fields: Any) -> None:
    """Store a hybrid (and, when given, the image vector and its model) and mark the row ready."""
    Image.objects.filter(pk=image_id).update(
        hybrid_vector=embedding.to_bytes(hybrid),
        hybrid_weight=weight,
        hybrid_updated_at=now,
        status=Image.Status.READY,
        failure_reason="",
        status_changed_at=now,
        **vector_fields,
    )


def _mark_failed(image_id: int, reason: str) -> None:
    Image.objects.filter(pk=image_id).update(
        status=Image.Status.FAILED, failure_reason=reason[:2000], status_changed_at=timezone.now()
    )


def hybrids_refresh(*, image_ids: Sequence[int]) -> int:
    """Recompute hybrids from stored image and label vectors (after a relabel, a label rename
    or a weight change). The image model does not run; only new label texts are encoded."""
    model = embedding.model_name()
    weight = settings.IMAGESEARCH_IMAGE_WEIGHT
    images = list(
        Image.objects.filter(
            pk__in=image_ids, embedding_model=model, image_vector__isnull=False
        ).prefetch_related("labels")
    )
    if not images:
        return 0
    label_vectors = label_vectors_ensure(label for i in images for label in i.labels.all())
    now = timezone.now()
    for image in images:
        hybrid = _hybrid_for(image, embedding.from_bytes(image.image_vector), label_vectors)
        Image.objects.filter(pk=image.pk).update(
            hybrid_vector=embedding.to_bytes(hybrid), hybrid_weight=weight, hybrid_updated_at=now
        )
    request_rebuild()
    return len(images)


def images_reembed(*, image_ids: Sequence[int]) -> int:
    """Forget the image vectors of these images and embed them again."""
    with transaction.atomic():
        count = Image.objects.filter(pk__in=image_ids).update(
            image_vector=None,
            embedding_model="",
            status=Image.Status.PENDING,
            failure_reason="",
            status_changed_at=timezone.now(),
            queued_at=None,
        )
        ids = list(image_ids)
        transaction.on_commit(lambda: enqueue_embedding(ids))
    return count


def embed_missing() -> dict[str, int]:
    """Bring every row up to date with the current model and weight.

    Re-embeds only images without a vector from the current model (pending, failed, or made
    by another model: invariant 6); recomputes hybrids made with another weight; rebuilds.
    """
    model = embedding.model_name()
    weight = settings.IMAGESEARCH_IMAGE_WEIGHT
    stale_ids = list(Image.objects.stale(model).values_list("pk", flat=True))
    if stale_ids:
        Image.objects.filter(pk__in=stale_ids).update(
            status=Image.Status.PENDING, failure_reason="", status_changed_at=timezone.now()
        )
        transaction.on_commit(lambda: enqueue_embedding(stale_ids))
    reweigh_ids = list(
        Image.objects.filter(embedding_model=model, image_vector__isnull=False)
        .exclude(hybrid_weight=weight)
        .values_list("pk", flat=True)
    )
    if reweigh_ids:
        transaction.on_commit(lambda: enqueue_hybrid_refresh(reweigh_ids))
    transaction.on_commit(request_rebuild)
    return {"reembed": len(stale_ids), "reweigh": len(reweigh_ids)}


def failed_retry() -> int:
    ids = list(Image.objects.failed().values_list("pk", flat=True))
    return images_reembed(image_ids=ids) if ids else 0


# --- The index ---------------------------------------------------------------------------------


def request_rebuild() -> None:
    """Ask for an index rebuild. Bursts coalesce: at most one rebuild task waits in the queue,
    and it runs ``IMAGESEARCH_REBUILD_DELAY`` seconds later, after the burst (later for a large
    library: see :func:`_rebuild_countdown`)."""
    IndexState.get()
    IndexState.objects.filter(pk=1).update(requested=F("requested") + 1)
    _schedule_rebuild()


def _schedule_rebuild() -> bool:
    from . import tasks

    claimed = IndexState.objects.filter(pk=1, rebuild_queued=False).update(
        rebuild_queued=True, queued_at=timezone.now()
    )
    if not claimed:
        return False  # one is already waiting; it will see this request
    try:
        tasks.rebuild_index.apply_async(countdown=_rebuild_countdown(), retry=False)
    except Exception:  # noqa: BLE001 - broker down: the sweep schedules it later
        IndexState.objects.filter(pk=1).update(rebuild_queued=False)
        logger.warning("could not enqueue an index rebuild; the sweep will retry", exc_info=True)
        return False
    return True


#: A rebuild waits at least this many times the last rebuild's duration (see below).
REBUILD_SPACING = 2.0
REBUILD_MAX_COUNTDOWN = 100.0  # under the sweep's 120 s for a queued rebuild gone stale


def _rebuild_countdown() -> float:
    """Seconds a newly scheduled rebuild waits: the configured delay, or, for a large library,
    twice as long as the last rebuild took. During a long ingest into a large index the one
    worker then spends at most a third of its time rebuilding (a full rebuild took ~10-30 s
    at a million vectors here), so total ingest work stays linear in the number of images;
    a small library's rebuild (milliseconds) waits only the configured delay."""
    last = IndexState.objects.filter(pk=1).values_list("last_rebuild_seconds", flat=True).first() or 0.0
    return min(REBUILD_MAX_COUNTDOWN, max(settings.IMAGESEARCH_REBUILD_DELAY, REBUILD_SPACING * last))


def _read_vectors(model: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, hybrid vectors) of the searchable rows, in one pass over a chunked cursor.

    A plain cursor, a chunk of rows at a time turned into one array: the ORM's per-row
    iteration and a copy per blob were a quarter to half of the ~12-19 s this took at a
    million rows here (benchmarks/). ``chunked_cursor`` is server-side on PostgreSQL, so
    memory stays at the vectors plus one chunk of rows.
    """
    query = Image.objects.searchable(model).order_by().values_list("pk", "hybrid_vector").query
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
                    f"hybrid vectors of model {model!r} have different sizes {sorted(sizes)}: re-embed them"
                )
            id_parts.append(np.fromiter((pk for pk, _ in rows), dtype=np.int64, count=len(rows)))
            vector_parts.append(np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(rows), -1))
    if not id_parts:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(id_parts), np.concatenate(vector_parts).astype(np.float32, copy=False)


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
    started = time.monotonic()
    directory = index_dir()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with search_index.writer_lock(directory, blocking=False):
            state = IndexState.get()
            seen = state.requested
            # New requests from here on schedule another rebuild.
            IndexState.objects.filter(pk=1).update(rebuild_queued=False)
            model = embedding.model_name()
            ids, vectors = _read_vectors(model)
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
        _schedule_rebuild()
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


def _known_dimension() -> int:
    """The model's dimension, for an empty index (loads the model if needed)."""
    try:
        return embedding.dimension()
    except embedding.ModelUnavailable:
        manifest = search_index.read_current_manifest(index_dir())
        return manifest.dim if manifest else 1


def sweep() -> dict[str, int]:
    """Periodic repair: re-enqueue images pending for too long (or never handed to the broker)
    and schedule a rebuild when the index is behind and none is waiting."""
    now = timezone.now()
    timeout = timedelta(seconds=settings.IMAGESEARCH_PENDING_TIMEOUT)
    stuck = list(
        Image.objects.pending()
        .filter(Q(queued_at__isnull=True) | Q(queued_at__lt=now - timeout))
        .values_list("pk", flat=True)[:50_000]
    )
    if stuck:
        enqueue_embedding(stuck)
    state = IndexState.get()
    stale_queue = (
        state.rebuild_queued
        and state.queued_at
        and state.queued_at < now - timedelta(seconds=max(120.0, 10 * settings.IMAGESEARCH_REBUILD_DELAY))
    )
    if stale_queue:
        IndexState.objects.filter(pk=1).update(rebuild_queued=False)
    rebuild = False
    if index_behind() or stale_queue:
        rebuild = _schedule_rebuild()
    return {"requeued": len(stuck), "rebuild_scheduled": int(rebuild)}


def index_behind() -> bool:
    """True when the index does not hold exactly what the database says it should."""
    state = IndexState.get()
    manifest = search_index.read_current_manifest(index_dir())
    model = embedding.model_name()
    searchable = Image.objects.searchable(model)
    count = searchable.count()
    if manifest is None:
        return count > 0
    if state.behind_requests or manifest.count != count or manifest.model != model:
        return True
    if manifest.kind != settings.IMAGESEARCH_INDEX_KIND:  # the setting changed: rebuild
        return True
    if not _current_generation_usable(manifest):  # damaged or truncated: rebuild, which repairs
        return True
    newest = searchable.aggregate(newest=Max("hybrid_updated_at"))["newest"]
    return bool(newest and newest.timestamp() > manifest.created_at)


def _current_generation_usable(manifest: search_index.Manifest) -> bool:
    """Whether this process's reader verified (checksum, size, manifest) and serves the
    generation ``CURRENT`` names. Waits for the verification, done once per generation."""
    reader = _reader()
    reader.refresh()
    return reader.manifest is not None and reader.manifest.generation == manifest.generation


def index_status() -> dict[str, Any]:
    """What the admin status page shows."""
    counts = {status: 0 for status in Image.Status.values}
    for row in Image.objects.order_by().values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    reader_status: dict[str, Any] = {}
    try:
        reader = _reader()
        reader.refresh()  # a damaged CURRENT is reported even where no search has run yet
        reader_status = reader.status()
    except search_index.IndexUnavailable as exc:
        reader_status = {"last_error": str(exc)}
    manifest = search_index.read_current_manifest(index_dir())
    state = IndexState.get()
    return {
        "counts": counts,
        "total": sum(counts.values()),
        "manifest": manifest,
        "age_seconds": (time.time() - manifest.created_at) if manifest else None,
        "built_at": datetime.fromtimestamp(manifest.created_at, tz=UTC) if manifest else None,
        "reader": reader_status,
        "behind": index_behind(),
        "state": state,
        "model": embedding.model_name(),
        "stale": Image.objects.stale(embedding.model_name()).count(),
        "model_error": embedding.last_load_error(),
    }


def _reader() -> search_index.IndexReader:
    return search_index.get_reader(index_dir(), expected_model=embedding.model_name())


# --- Queries -----------------------------------------------------------------------------------


class QueryError(ValueError):
    """A query this application cannot answer; the message is for the person who asked."""

    status_code = 400


class SearchUnavailable(QueryError):
    """The query is fine but search cannot answer now (no index yet, model missing)."""

    status_code = 503


class QueryTargetMissing(QueryError):
    """The query names something that is not there (any more): an image, a remembered upload."""

    status_code = 404


@dataclass
class Hit:
    image: Image
    score: float | None  # None when browsing (no query)


@dataclass
class ResultPage:
    hits: list[Hit]
    page: int
    page_size: int
    has_next: bool
    generation: int | None
    notices: list[str] = field(default_factory=list)

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def start_rank(self) -> int:
        return (self.page - 1) * self.page_size + 1


def clean_query_text(text: str) -> str:
    """Drop control characters and surplus whitespace; cut what CLIP would never read."""
    text = "".join(ch if ch.isprintable() or ch in "\t\n" else " " for ch in text[: MAX_QUERY_CHARS * 4])
    return " ".join(text.split())[:MAX_QUERY_CHARS]


def query_vector_for_text(text: str) -> np.ndarray:
    cleaned = clean_query_text(text)
    if not cleaned:
        raise QueryError("Type a few words to search for, or choose an image.")
    try:
        return embedding.encode_query_text(cleaned)
    except embedding.ModelUnavailable as exc:
        raise SearchUnavailable(f"Search is unavailable: {exc}") from None


def query_vector_for_image(data: bytes) -> np.ndarray:
    try:
        validated = validate_image_bytes(data)
    except InvalidImage as exc:
        raise QueryError(f"That image cannot be used for search: {exc}") from None
    try:
        return embedding.encode_images([validated.rgb])[0]
    except embedding.ModelUnavailable as exc:
        raise SearchUnavailable(f"Search is unavailable: {exc}") from None


def query_vector_for_image_id(image_id: int) -> np.ndarray:
    row = (
        Image.objects.searchable(embedding.model_name())
        .filter(pk=image_id)
        .values_list("hybrid_vector", flat=True)
        .first()
    )
    if row is None:
        raise QueryTargetMissing("That image does not exist (any more), or is not indexed yet.")
    return embedding.from_bytes(row)


def query_vector_combine(
    *, image_vector: np.ndarray, text_vector: np.ndarray, image_weight: float
) -> np.ndarray:
    """A query of words and an image together: ``normalize(w * n(image) + (1 - w) * n(text))``,
    the formula of the stored hybrids with the words in place of the labels."""
    if not 0.0 <= image_weight <= 1.0:
        raise QueryError("The image weight is a number from 0 to 1.")
    return embedding.combine(image_vector, [text_vector], image_weight)


SORTS = ("relevance", "date")
DATE_SORT_POOL = 200  # "newest first" reorders this many best matches
# A label filter that leaves at most this many rows is answered by scoring those rows' stored
# hybrids directly (exact, one query); a wider filter over-fetches from the index instead.
EXACT_FILTER_LIMIT = 5000
_ROW_CHUNK = 2000  # ids re-read from the database per query


def search(
    vector: np.ndarray,
    *,
    page: int = 1,
    page_size: int | None = None,
    exclude_id: int | None = None,
    labels: Sequence[str] = (),
    sort: str = "relevance",
) -> ResultPage:
    """One page of the images nearest to ``vector``, best first, re-read from the database.

    Asks the index for more ids than the page needs (rows deleted or no longer ready since
    the last rebuild drop out) and widens the request until the page is full or the index
    is exhausted.

    ``labels``: keep only images that carry every one of these labels (names, any case). A
    narrow filter is scored exactly from the rows' stored hybrids; a wide one over-fetches
    from the index in proportion to how few rows it keeps.
    ``sort``: ``"relevance"`` (best first) or ``"date"``: the ``DATE_SORT_POOL`` best
    matches, newest upload first.
    """
    page_size = page_size or settings.IMAGESEARCH_PAGE_SIZE
    start = _check_paging(page, page_size, sort)
    reader = _reader()
    # A cheap check for a new generation; it loads in the background while this one serves.
    manifest = reader.poll()
    if manifest is None:
        raise SearchUnavailable(_no_index_message())
    vector = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    if vector.shape[1] != manifest.dim:
        raise SearchUnavailable("The index was built with another model; it is being rebuilt.")
    needed = DATE_SORT_POOL if sort == "date" else start + page_size + 1
    label_ids = _label_ids(labels)
    if label_ids is None:  # a label nobody carries: nothing can match
        hits: list[Hit] = []
    elif not label_ids:
        hits = _nearest_from_index(reader, vector, needed=needed, exclude_id=exclude_id)
    else:
        candidates = _with_labels(Image.objects.searchable(embedding.model_name()), label_ids)
        count = candidates.count()
        if count <= EXACT_FILTER_LIMIT:
            hits = _nearest_among(candidates, vector, needed=needed, exclude_id=exclude_id)
        else:
            hits = _nearest_from_index(
                reader,
                vector,
                needed=needed,
                exclude_id=exclude_id,
                label_ids=label_ids,
                kept_fraction=count / max(1, manifest.count),
            )
    if sort == "date":
        hits = sorted(hits[:DATE_SORT_POOL], key=lambda h: (h.image.uploaded_at, h.image.pk), reverse=True)
    generation = reader.manifest.generation if reader.manifest else None
    shown = hits[start : start + page_size]
    # Labels of the hits shown only: Django's prefetch costs ~0.1 ms per row, and prefetching
    # for every over-fetched row was a third of a search's time at 10k images (benchmarks/).
    prefetch_related_objects([hit.image for hit in shown], "labels")
    return ResultPage(
        hits=shown,
        page=page,
        page_size=page_size,
        has_next=len(hits) > start + page_size,
        generation=generation,
        notices=_notices(),
    )


def browse(*, labels: Sequence[str] = (), page: int = 1, page_size: int | None = None) -> ResultPage:
    """Ready images carrying every one of ``labels`` (all images when none), newest first.

    No query vector: needs neither the model nor the index, so it works while they are down.
    """
    page_size = page_size or settings.IMAGESEARCH_PAGE_SIZE
    start = _check_paging(page, page_size, "date")
    label_ids = _label_ids(labels)
    hits: list[Hit] = []
    if label_ids is not None:
        rows = _with_labels(Image.objects.ready(), label_ids).defer("image_vector", "hybrid_vector")
        rows = rows.order_by("-uploaded_at", "-pk").prefetch_related("labels")
        hits = [Hit(image, None) for image in rows[start : start + page_size + 1]]
    manifest = search_index.read_current_manifest(index_dir())
    return ResultPage(
        hits=hits[:page_size],
        page=page,
        page_size=page_size,
        has_next=len(hits) > page_size,
        generation=manifest.generation if manifest else None,
    )


def _check_paging(page: int, page_size: int, sort: str) -> int:
    """The offset of the page's first result; a QueryError for pages we do not serve."""
    if sort not in SORTS:
        raise QueryError(f"Sort by one of: {', '.join(SORTS)}.")
    if page < 1 or page_size < 1:
        raise QueryError("Page numbers start at 1.")
    if page * page_size > MAX_RESULTS:
        raise QueryError(f"Results stop at {MAX_RESULTS}; refine the query to see others.")
    return (page - 1) * page_size


def _label_ids(names: Sequence[str]) -> list[int] | None:
    """Ids of the labels named (any case); None when one of them does not exist."""
    ids: list[int] = []
    for name in dict.fromkeys(n for n in names if n.strip()):
        pk = Label.objects.named(name).values_list("pk", flat=True).first()
        if pk is None:
            return None
        ids.append(pk)
    return ids


def _with_labels(rows: QuerySet[Image], label_ids: Sequence[int]) -> QuerySet[Image]:
    for pk in label_ids:  # one join per label: images carrying all of them
        rows = rows.filter(labels=pk)
    return rows


def _rows_in_rank_order(
    pairs: Sequence[tuple[int, float]], *, needed: int, label_ids: Sequence[int] = ()
) -> list[Hit]:
    """Re-read ranked ids from the database (invariant 3), in chunks, until ``needed`` hits."""
    hits: list[Hit] = []
    rows_qs = _with_labels(Image.objects.ready(), label_ids).defer("image_vector", "hybrid_vector")
    # Most ranked ids are still there: read a few more than needed first, not the whole
    # over-fetch (each row read costs, see search()); then big chunks if many dropped out.
    start, size = 0, needed + max(8, needed // 4)
    while start < len(pairs):
        chunk = pairs[start : start + size]
        rows = rows_qs.filter(pk__in=[pk for pk, _ in chunk]).in_bulk()  # labels: see search()
        hits.extend(Hit(rows[pk], score) for pk, score in chunk if pk in rows)
        if len(hits) >= needed:
            break
        start, size = start + size, _ROW_CHUNK
    return hits


def _nearest_from_index(
    reader: search_index.IndexReader,
    vector: np.ndarray,
    *,
    needed: int,
    exclude_id: int | None,
    label_ids: Sequence[int] = (),
    kept_fraction: float = 1.0,
) -> list[Hit]:
    total = reader.manifest.count if reader.manifest else 0
    k = min(total, int(needed / max(kept_fraction, 1e-6)) * 2 + 16)
    hits: list[Hit] = []
    while k > 0:
        scores, ids = reader.search(vector, k)
        pairs = [
            (int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0 and i != exclude_id
        ]
        hits = _rows_in_rank_order(pairs, needed=needed, label_ids=label_ids)
        if len(hits) >= needed or k >= total:
            break
        k = min(total, k * 4)
    return hits


def _nearest_among(
    candidates: QuerySet[Image], vector: np.ndarray, *, needed: int, exclude_id: int | None
) -> list[Hit]:
    """Score a few rows exactly from their stored hybrids (the vectors the index is built from)."""
    rows = list(candidates.exclude(pk=exclude_id or 0).order_by().values_list("pk", "hybrid_vector"))
    if not rows:
        return []
    try:
        matrix = np.frombuffer(b"".join(bytes(blob) for _, blob in rows), dtype="<f4").reshape(len(rows), -1)
    except ValueError:
        raise SearchUnavailable("Stored vectors have different sizes; the images are being re-embedded.")
    if matrix.shape[1] != vector.shape[1]:
        raise SearchUnavailable("The index was built with another model; it is being rebuilt.")
    scores = matrix @ vector[0]
    order = np.argsort(-scores, kind="stable")[:needed]
    return _rows_in_rank_order([(int(rows[i][0]), float(scores[i])) for i in order], needed=needed)


def _no_index_message() -> str:
    pending = Image.objects.pending().count()
    if Image.objects.count() == 0:
        return "Nothing has been indexed yet: an administrator can upload images."
    if pending:
        return f"The index is not built yet: {pending} image(s) are still being processed."
    return "The search index is not available yet; it is being rebuilt."


def _notices() -> list[str]:
    notices = []
    pending = Image.objects.pending().count()
    if pending:
        notices.append(f"{pending} image(s) are still being indexed and may be missing from the results.")
    try:
        error = _reader().last_error
    except search_index.IndexUnavailable:
        error = None
    if error:
        notices.append("The newest index could not be loaded; showing results from the previous one.")
    state = IndexState.objects.filter(pk=1).first()
    if state is not None and state.behind_requests and not pending:
        notices.append("The index is being updated; the newest changes may take a moment to show.")
    return notices


def status_summary() -> dict[str, Any]:
    """:func:`index_status` as plain JSON-able values (the admin status page polls it, the API
    serves it)."""
    status = index_status()
    manifest = status["manifest"]
    state = status["state"]
    return {
        "counts": status["counts"],
        "total": status["total"],
        "stale": status["stale"],
        "model": status["model"],
        "model_error": status["model_error"] or "",
        "generation": manifest.generation if manifest else None,
        "vectors": manifest.count if manifest else 0,
        "dimension": manifest.dim if manifest else None,
        "size_bytes": manifest.size_bytes if manifest else None,
        "age_seconds": status["age_seconds"],
        "behind": status["behind"],
        "rebuild_queued": state.rebuild_queued,
        "last_rebuild_seconds": state.last_rebuild_seconds,
        "index_error": status["reader"].get("last_error") or "",
    }
