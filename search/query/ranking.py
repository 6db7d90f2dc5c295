"""Pages of results: the images nearest a query vector, or a browse without one.

With FAISS the index only ranks ids; every hit is re-read from the database, so a row deleted
or no longer ready since the last rebuild never shows (see docs/architecture.md, 'Invariants').
With pgvector (search.stores.pgvector) one query filters, ranks and limits the rows themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from django.db.models import QuerySet

from gallery.models import Image, Label

from .. import encoder, status
from ..errors import QueryError, SearchUnavailable
from ..stores import faiss as search_index
from ..stores import pgvector as vectorstore
from . import slots

PAGE_SIZE = 24  # results per page: the search page's grid, and the API's default
MAX_RESULTS = 1000  # deepest result a query pages to
SORTS = ("relevance", "date")
DATE_SORT_POOL = 200  # "newest first" reorders this many best matches
# A label filter that leaves at most this many rows is answered by scoring those rows' stored
# hybrids directly (exact, one query); a wider filter over-fetches from the index instead.
EXACT_FILTER_LIMIT = 5000
_ROW_CHUNK = 2000  # ids re-read from the database per query
# Rows scored per read by the exact scans (_nearest_among): the memory of one scan stays about
# this many hybrids, whatever the number of rows scanned.
SCAN_CHUNK = 10_000
# A label filter wider than EXACT_FILTER_LIMIT asks the index; when the index's first answer is
# short of the page (the filter's images lie far from the query), a filter up to this many rows
# is scanned exactly, once, instead of widening the index request towards the whole index and
# re-reading its ids 2,000 at a time.
EXACT_SCAN_FALLBACK_LIMIT = 50_000


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


def images_search(
    *,
    vector: np.ndarray,
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
    matches, newest first by the date taken (the upload time where there is none).
    """
    page_size = page_size or PAGE_SIZE
    start = _check_paging(page, page_size, sort)
    needed = DATE_SORT_POOL if sort == "date" else start + page_size + 1
    label_ids = _label_ids(labels)
    vector = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    if vectorstore.enabled():
        hits = _nearest_in_database(vector, needed=needed, exclude_id=exclude_id, label_ids=label_ids)
        generation, notices = None, status.search_notices()
    else:
        hits, generation, from_rows = _nearest_from_faiss(
            vector, needed=needed, exclude_id=exclude_id, label_ids=label_ids
        )
        notices = status.search_notices() + ([FROM_ROWS_NOTICE] if from_rows else [])
    if sort == "date":
        hits = sorted(hits[:DATE_SORT_POOL], key=lambda h: (h.image.sorted_at, h.image.pk), reverse=True)
    shown = hits[start : start + page_size]
    # Label names of the hits shown only, in one query: loading them for every over-fetched
    # row, or as Label objects, is a large share of a search's time.
    Image.label_names_load([hit.image for hit in shown])
    return ResultPage(
        hits=shown,
        page=page,
        page_size=page_size,
        has_next=len(hits) > start + page_size,
        generation=generation,
        notices=notices,
    )


def _nearest_in_database(
    vector: np.ndarray, *, needed: int, exclude_id: int | None, label_ids: list[int] | None
) -> list[Hit]:
    """pgvector: one query filters, ranks and limits; the rows come with it (nothing to re-read)."""
    if label_ids is None:  # a label nobody carries: nothing can match
        return []
    model = encoder.model_name()
    found = vectorstore.nearest(
        vector[0], model=model, needed=needed, exclude_id=exclude_id, label_ids=label_ids
    )
    if not found and not Image.objects.searchable(model).exists():
        raise SearchUnavailable(_no_index_message())
    return [Hit(image, score) for image, score in found]


def _nearest_from_faiss(
    vector: np.ndarray, *, needed: int, exclude_id: int | None, label_ids: list[int] | None
) -> tuple[list[Hit], int | None, bool]:
    """FAISS: (hits, the generation that answered, whether they were scored from the rows)."""
    reader = status.index_reader()
    # A cheap check for a new generation; it loads in the background while this one serves.
    manifest = reader.poll()
    status.index_repair_request(reader)
    searchable = Image.objects.searchable(encoder.model_name())
    # No generation can be served, but the rows hold every hybrid: answer exactly from them.
    from_rows = manifest is None and searchable.exists()
    if manifest is None and not from_rows:
        raise SearchUnavailable(_no_index_message())
    if manifest is not None and vector.shape[1] != manifest.dim:
        raise SearchUnavailable("The index was built with another model; it is being rebuilt.")
    if label_ids is None:  # a label nobody carries: nothing can match
        hits: list[Hit] = []
    elif from_rows:
        candidates = _with_labels(searchable, label_ids) if label_ids else searchable
        # Every row is read and scored: model-sized work, so it holds a model slot (a flood of
        # such queries is refused at once, not run side by side).
        with slots.model_slot():
            hits = _nearest_among(candidates, vector, needed=needed, exclude_id=exclude_id)
    elif not label_ids:
        hits = _nearest_from_index(reader, vector, needed=needed, exclude_id=exclude_id)
    else:
        candidates = _with_labels(searchable, label_ids)
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
                widen=count > EXACT_SCAN_FALLBACK_LIMIT,
            )
            if len(hits) < needed and count <= EXACT_SCAN_FALLBACK_LIMIT:
                hits = _nearest_among(candidates, vector, needed=needed, exclude_id=exclude_id)
    return hits, (reader.manifest.generation if reader.manifest else None), from_rows


FROM_ROWS_NOTICE = (
    "The search index is being rebuilt: these results were computed exactly from the database, "
    "which is slower until the index is back."
)


def images_browse(*, labels: Sequence[str] = (), page: int = 1, page_size: int | None = None) -> ResultPage:
    """Ready images carrying every one of ``labels`` (all images when none), newest first (by the
    date taken, the upload time where there is none).

    No query vector: needs neither the model nor the index, so it works while they are down.
    """
    page_size = page_size or PAGE_SIZE
    start = _check_paging(page, page_size, "date")
    label_ids = _label_ids(labels)
    hits: list[Hit] = []
    if label_ids is not None:
        rows = _with_labels(Image.objects.ready().for_display(), label_ids).newest_first()
        hits = [Hit(image, None) for image in rows[start : start + page_size + 1]]
    manifest = search_index.read_current_manifest(status.index_dir())
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
    """Re-read ranked ids from the database, in chunks, until ``needed`` hits."""
    hits: list[Hit] = []
    rows_qs = _with_labels(Image.objects.ready().without_vectors(), label_ids)
    # Most ranked ids are still there: read a few more than needed first, not the whole
    # over-fetch (each row read costs, see images_search()); then big chunks if many dropped out.
    start, size = 0, needed + max(8, needed // 4)
    while start < len(pairs):
        chunk = pairs[start : start + size]
        rows = rows_qs.filter(pk__in=[pk for pk, _ in chunk]).in_bulk()  # labels: see images_search()
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
    widen: bool = True,
) -> list[Hit]:
    """The index's nearest ids, re-read; asked again for four times as many while the page is
    not full (``widen``), up to the whole index."""
    total = reader.manifest.count if reader.manifest else 0
    k = min(total, int(needed / max(kept_fraction, 1e-6)) * 2 + 16)
    hits: list[Hit] = []
    while k > 0:
        scores, ids = reader.search(vector, k)
        pairs = [
            (int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0 and i != exclude_id
        ]
        hits = _rows_in_rank_order(pairs, needed=needed, label_ids=label_ids)
        if len(hits) >= needed or k >= total or not widen:
            break
        k = min(total, k * 4)
    return hits


def _nearest_among(
    candidates: QuerySet[Image], vector: np.ndarray, *, needed: int, exclude_id: int | None
) -> list[Hit]:
    """Score rows exactly from their stored hybrids (the vectors the index is built from), read
    and scored ``SCAN_CHUNK`` rows at a time, keeping the best ``needed``: the memory of a scan
    stays one chunk, however many rows it reads."""
    rows = candidates.exclude(pk=exclude_id or 0).order_by().values_list("pk", "hybrid_vector")
    best_ids = np.empty(0, dtype=np.int64)
    best_scores = np.empty(0, dtype=np.float32)
    chunk: list[tuple[int, bytes]] = []

    def score(chunk: list[tuple[int, bytes]]) -> None:
        nonlocal best_ids, best_scores
        try:
            matrix = np.frombuffer(b"".join(bytes(blob) for _, blob in chunk), dtype="<f4")
            matrix = matrix.reshape(len(chunk), -1)
        except ValueError:
            raise SearchUnavailable("Stored vectors have different sizes; the images are being re-embedded.")
        if matrix.shape[1] != vector.shape[1]:
            raise SearchUnavailable("The index was built with another model; it is being rebuilt.")
        ids = np.fromiter((pk for pk, _ in chunk), dtype=np.int64, count=len(chunk))
        best_ids = np.concatenate([best_ids, ids])
        best_scores = np.concatenate([best_scores, matrix @ vector[0]])
        if len(best_ids) > needed:
            keep = np.argpartition(-best_scores, needed - 1)[:needed]
            best_ids, best_scores = best_ids[keep], best_scores[keep]

    for row in rows.iterator(chunk_size=SCAN_CHUNK):
        chunk.append(row)
        if len(chunk) >= SCAN_CHUNK:
            score(chunk)
            chunk = []
    if chunk:
        score(chunk)
    # Best first; equal scores by id, as a stable sort of the rows in id order gave them.
    order = np.lexsort((best_ids, -best_scores))
    pairs = [(int(best_ids[i]), float(best_scores[i])) for i in order]
    return _rows_in_rank_order(pairs, needed=needed)


def _no_index_message() -> str:
    pending = Image.objects.pending().count()
    if Image.objects.count() == 0:
        return "Nothing has been indexed yet: an administrator can upload images."
    if pending:
        return f"The index is not built yet: {pending} image(s) are still being processed."
    return "The search index is not available yet; it is being rebuilt."
