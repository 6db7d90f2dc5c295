"""The FAISS store's search: the index ranks ids, every hit is re-read from the rows.

A row deleted or no longer ready since the last rebuild never shows (see docs/architecture.md,
'Invariants'). A narrow label filter, and a search while no generation can be served, are
scored exactly from the rows' stored hybrids instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.db.models import QuerySet

from gallery.models import Image

from .. import encoder
from ..errors import SearchUnavailable
from . import base
from . import faiss as search_index
from .base import Nearest, Slot
from .result_rows import rows_by_id
from .rows import no_index_message, with_labels, without_labels

_ROW_CHUNK = 2000  # ids re-read from the database per query
# Rows scored per read by the exact scans (nearest_among): the memory of one scan stays about
# this many hybrids, whatever the number of rows scanned.
SCAN_CHUNK = 10_000
# A label filter wider than base.EXACT_FILTER_LIMIT asks the index; when the index's first answer is
# short of the page (the filter's images lie far from the query), a filter up to this many rows
# is scanned exactly, once, instead of widening the index request towards the whole index and
# re-reading its ids 2,000 at a time.
EXACT_SCAN_FALLBACK_LIMIT = 50_000
# An emphasised search (``picture_needed``) asks the hybrid index with its tuned search parameter
# times this (nprobe, efSearch): the rows an alpha-score ranks first lie in lists the tuned value,
# chosen for the hybrids' own top 10, does not visit (BENCHMARKS.md, "The emphasis's recall@10").
EMPHASIS_WIDEN = 4

FROM_ROWS_NOTICE = (
    "The search index is being rebuilt: these results were computed exactly from the database, "
    "which is slower until the index is back."
)

Found = list[tuple[Image, float]]


def nearest(
    reader: search_index.IndexReader,
    manifest: search_index.Manifest | None,
    vector: np.ndarray,
    *,
    needed: int,
    exclude_id: int | None,
    label_ids: Sequence[int] | None,
    slot: Slot,
    without_label_ids: Sequence[int] = (),
    picture_needed: int = 0,
) -> Nearest:
    """The hits of ``reader`` (whose served generation is ``manifest``), or of the rows.
    ``picture_needed``: also up to that many rows nearest by their image vectors alone (the
    generation's picture index, or an exact scan where the hybrids are scanned exactly), and
    the hybrid index searched ``EMPHASIS_WIDEN`` times wider; none while the rows answer."""

    # Built only where it is read (no generation, or a label filter): building the query costs
    # a tenth of a millisecond, a share of every plain search's own work.
    def searchable() -> QuerySet[Image]:
        return without_labels(Image.objects.searchable(encoder.model_name()), without_label_ids)

    # No generation can be served, but the rows hold every hybrid: answer exactly from them.
    from_rows = manifest is None and searchable().exists()
    if manifest is None and not from_rows:
        raise SearchUnavailable(no_index_message())
    if manifest is not None and vector.shape[1] != manifest.dim:
        raise SearchUnavailable("The index was built with another model; it is being rebuilt.")
    widen = EMPHASIS_WIDEN if picture_needed > 0 else 1
    by_picture: Found = []
    if label_ids is None:  # a label nobody carries: nothing can match
        found: Found = []
    elif from_rows:
        candidates = with_labels(searchable(), label_ids) if label_ids else searchable()
        # Every row is read and scored: model-sized work, so it holds a model slot (a flood of
        # such queries is refused at once, not run side by side).
        with slot():
            found = nearest_among(candidates, vector, needed=needed, exclude_id=exclude_id)
    elif not label_ids:
        filters = {"exclude_id": exclude_id, "without_label_ids": without_label_ids}
        found = _nearest_from_index(reader, vector, needed=needed, widen_factor=widen, **filters)
        if picture_needed > 0:
            by_picture = _nearest_from_index(reader, vector, needed=picture_needed, pictures=True, **filters)
    else:
        candidates = with_labels(searchable(), label_ids)
        count = candidates.count()
        found, by_picture = _filtered(
            reader,
            candidates,
            vector,
            needed=needed,
            picture_needed=picture_needed,
            exclude_id=exclude_id,
            label_ids=label_ids,
            without_label_ids=without_label_ids,
            count=count,
            kept_fraction=count / max(1, manifest.count),
        )
    generation = reader.manifest.generation if reader.manifest else None
    notices = [FROM_ROWS_NOTICE] if from_rows else []
    return Nearest(found, generation=generation, notices=notices, by_picture=by_picture)


def _filtered(
    reader: search_index.IndexReader,
    candidates: QuerySet[Image],
    vector: np.ndarray,
    *,
    needed: int,
    picture_needed: int,
    exclude_id: int | None,
    label_ids: Sequence[int],
    without_label_ids: Sequence[int],
    count: int,
    kept_fraction: float,
) -> tuple[Found, Found]:
    """A label filter's hits, and its rows nearest by picture (``picture_needed`` > 0): scored
    exactly from the rows when the filter is narrow, else asked of the indexes."""
    if count <= base.EXACT_FILTER_LIMIT:
        found = nearest_among(candidates, vector, needed=needed, exclude_id=exclude_id)
        by_picture: Found = []
        if picture_needed > 0:
            by_picture = nearest_among(
                candidates, vector, needed=picture_needed, exclude_id=exclude_id, field="image_vector"
            )
        return found, by_picture
    filters = {
        "exclude_id": exclude_id,
        "label_ids": label_ids,
        "without_label_ids": without_label_ids,
        "kept_fraction": kept_fraction,
        "widen": count > EXACT_SCAN_FALLBACK_LIMIT,
    }
    widen_factor = EMPHASIS_WIDEN if picture_needed > 0 else 1
    found = _nearest_from_index(reader, vector, needed=needed, widen_factor=widen_factor, **filters)
    if len(found) < needed and count <= EXACT_SCAN_FALLBACK_LIMIT:
        found = nearest_among(candidates, vector, needed=needed, exclude_id=exclude_id)
    by_picture = []
    if picture_needed > 0 and reader.serves_pictures:  # else the hybrid pool is re-scored alone
        by_picture = _nearest_from_index(reader, vector, needed=picture_needed, pictures=True, **filters)
        if len(by_picture) < picture_needed and count <= EXACT_SCAN_FALLBACK_LIMIT:
            by_picture = nearest_among(
                candidates, vector, needed=picture_needed, exclude_id=exclude_id, field="image_vector"
            )
    return found, by_picture


def _rows_in_rank_order(
    pairs: Sequence[tuple[int, float]],
    *,
    needed: int,
    label_ids: Sequence[int] = (),
    without_label_ids: Sequence[int] = (),
) -> Found:
    """Re-read ranked ids from the database, in chunks, until ``needed`` hits."""
    found: Found = []
    # Most ranked ids are still there: read a few more than needed first, not the whole
    # over-fetch (each row read costs, see ranking.images_search()); then big chunks if many dropped out.
    start, size = 0, needed + max(8, needed // 4)
    while start < len(pairs):
        chunk = pairs[start : start + size]
        rows = rows_by_id([pk for pk, _ in chunk], label_ids=label_ids, without_label_ids=without_label_ids)
        found.extend((rows[pk], score) for pk, score in chunk if pk in rows)
        if len(found) >= needed:
            break
        start, size = start + size, _ROW_CHUNK
    return found


def _nearest_from_index(
    reader: search_index.IndexReader,
    vector: np.ndarray,
    *,
    needed: int,
    exclude_id: int | None,
    label_ids: Sequence[int] = (),
    without_label_ids: Sequence[int] = (),
    kept_fraction: float = 1.0,
    widen: bool = True,
    widen_factor: int = 1,
    pictures: bool = False,
) -> Found:
    """The index's nearest ids, re-read; asked again for four times as many while the page is
    not full (``widen``), up to the whole index. ``widen_factor``: the hybrid index searched
    that much wider (``reader.search``'s ``widen``). ``pictures``: the generation's picture
    index instead (none where the generation has none)."""
    manifest = reader.manifest
    total = manifest.count if manifest else 0
    if pictures:
        total = manifest.picture.count if manifest and manifest.picture else 0
    k = min(total, int(needed / max(kept_fraction, 1e-6)) * 2 + 16)
    found: Found = []
    while k > 0:
        if pictures:
            answer = reader.search_pictures(vector, k)
            if answer is None:  # no picture index that verified
                return []
            scores, ids = answer
        else:
            scores, ids = reader.search(vector, k, widen=widen_factor)
        pairs = [
            (int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0 and i != exclude_id
        ]
        found = _rows_in_rank_order(
            pairs, needed=needed, label_ids=label_ids, without_label_ids=without_label_ids
        )
        if len(found) >= needed or k >= total or not widen:
            break
        k = min(total, k * 4)
    return found


def nearest_among(
    candidates: QuerySet[Image],
    vector: np.ndarray,
    *,
    needed: int,
    exclude_id: int | None,
    field: str = "hybrid_vector",
) -> Found:
    """Score rows exactly from their stored hybrids (the vectors the index is built from), read
    and scored ``SCAN_CHUNK`` rows at a time, keeping the best ``needed``: the memory of a scan
    stays one chunk, however many rows it reads. ``field="image_vector"``: by their image
    vectors instead (normalised: the score is the cosine), rows without one left out."""
    pictures = field == "image_vector"
    if pictures:
        candidates = candidates.filter(image_vector__isnull=False)
    rows = candidates.exclude(pk=exclude_id or 0).order_by().values_list("pk", field)
    best_ids = np.empty(0, dtype=np.int64)
    best_scores = np.empty(0, dtype=np.float32)
    chunk: list[tuple[int, bytes]] = []

    def score(chunk: list[tuple[int, bytes]]) -> None:
        nonlocal best_ids, best_scores
        try:
            matrix = encoder.from_bytes(b"".join(bytes(blob) for _, blob in chunk)).reshape(len(chunk), -1)
        except ValueError:
            raise SearchUnavailable("Stored vectors have different sizes; the images are being re-embedded.")
        if matrix.shape[1] != vector.shape[1]:
            raise SearchUnavailable("The index was built with another model; it is being rebuilt.")
        if pictures:
            norms = np.linalg.norm(matrix, axis=1)
            matrix = matrix / np.where(norms > 0, norms, 1.0)[:, None]
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
