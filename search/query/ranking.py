"""Pages of results: the images nearest a query vector, or a browse without one.

The store (:mod:`search.stores.selection`) finds the nearest ready rows; this module checks the
paging, turns label names into ids, orders by date and loads the label names of the page shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gallery.models import Image, Label

from .. import status
from ..errors import QueryError
from ..stores.rows import with_labels
from ..stores.rows import without_labels as rows_without_labels
from ..stores.selection import vector_store
from . import explain, slots
from .explain import Explanation, QueryVector, RowVectors
from .row_vectors import rows_vectors

PAGE_SIZE = 24  # results per page: the search page's grid, and the API's default
MAX_RESULTS = 1000  # deepest result a query pages to
SORTS = ("relevance", "date")
DATE_SORT_POOL = 200  # "newest first" reorders this many best matches
# An emphasis re-scores from their stored parts this many of the nearest hybrids (the store
# searching its hybrid index wider for it) together with up to EMPHASIS_PICTURE_POOL rows nearest
# by their image vectors alone: the hybrids miss many of the rows the alpha-score ranks first
# (BENCHMARKS.md, "The emphasis's recall@10 at 1,000,000 rows", measures both).
EMPHASIS_POOL = 500
EMPHASIS_PICTURE_POOL = 500


@dataclass
class Hit:
    image: Image
    score: float | None  # None when browsing (no query)
    why: Explanation | None = None  # the picture and label parts of ``score``


@dataclass
class ResultPage:
    hits: list[Hit]
    page: int
    page_size: int
    has_next: bool
    generation: int | None
    notices: list[str] = field(default_factory=list)
    hidden: int = 0  # results of this page's span below the cut-off (``min_score``)
    cutoff: Any = None  # the calibrated cut-off applied (search.calibration.cutoffs.Cutoff)

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def start_rank(self) -> int:
        return (self.page - 1) * self.page_size + 1


def images_search(
    *,
    vector: np.ndarray | QueryVector,
    page: int = 1,
    page_size: int | None = None,
    exclude_id: int | None = None,
    labels: Sequence[str] = (),
    without_labels: Sequence[str] = (),
    sort: str = "relevance",
    alpha: float | None = None,
    min_score: float | None = None,
) -> ResultPage:
    """One page of the images nearest to ``vector``, best first, re-read from the database, each
    with the picture and label parts of its score (:mod:`search.query.explain`).

    Asks the index for more ids than the page needs (rows deleted or no longer ready since
    the last rebuild drop out) and widens the request until the page is full or the index
    is exhausted.

    ``labels``: keep only images that carry every one of these labels (names, any case). A
    narrow filter is scored exactly from the rows' stored hybrids; a wide one over-fetches
    from the index in proportion to how few rows it keeps. ``without_labels``: leave out
    images that carry any of these.
    ``sort``: ``"relevance"`` (best first) or ``"date"``: the ``DATE_SORT_POOL`` best
    matches, newest first by the date taken (the upload time where there is none).
    ``alpha``: rank by ``alpha * cos(q, image) + (1 - alpha) * cos(q, labels)`` instead of the
    stored hybrids: the ``EMPHASIS_POOL`` nearest hybrids and the ``EMPHASIS_PICTURE_POOL``
    rows nearest by picture (where the store has them) re-scored from their stored parts.
    ``min_score``: leave out results whose hybrid score (the default ranking's) is below it.
    """
    query = vector if isinstance(vector, QueryVector) else QueryVector.single("query", vector)
    page_size = page_size or PAGE_SIZE
    start = _check_paging(page, page_size, sort)
    needed = DATE_SORT_POOL if sort == "date" else start + page_size + 1
    label_ids = _label_ids(labels)
    without_ids = _label_ids_any(without_labels)
    nearest = vector_store().nearest(
        query.vector,
        needed=max(needed, EMPHASIS_POOL) if alpha is not None else needed,
        exclude_id=exclude_id,
        label_ids=label_ids,
        without_label_ids=without_ids,
        slot=slots.model_slot,
        picture_needed=EMPHASIS_PICTURE_POOL if alpha is not None else 0,
    )
    hits = [Hit(image, score) for image, score in nearest.found]
    if alpha is not None:
        known = {hit.image.pk for hit in hits}
        hits += [Hit(image, score) for image, score in nearest.by_picture if image.pk not in known]
    generation, notices = nearest.generation, status.search_notices() + nearest.notices
    parts: dict[int, RowVectors] = {}
    if alpha is not None:
        parts = rows_vectors([hit.image.pk for hit in hits])
        hits = _emphasised(query, hits, parts, alpha)
    hidden = 0
    if min_score is not None:
        hits, hidden = _cut(query, hits, parts, min_score, span=start + page_size)
    if sort == "date":
        hits = sorted(hits[:DATE_SORT_POOL], key=lambda h: (h.image.sorted_at, h.image.pk), reverse=True)
    shown = hits[start : start + page_size]
    _explain(query, shown, alpha)
    return ResultPage(
        hits=shown,
        page=page,
        page_size=page_size,
        has_next=len(hits) > start + page_size,
        generation=generation,
        notices=notices,
        hidden=hidden,
    )


def _emphasised(query: QueryVector, hits: list[Hit], parts: dict[int, RowVectors], alpha: float) -> list[Hit]:
    """``hits`` re-scored by ``alpha`` from their stored parts, best first (equal scores by id)."""
    hits = [hit for hit in hits if hit.image.pk in parts]
    if not hits:
        return []
    rows = [parts[hit.image.pk] for hit in hits]
    images = np.stack([row.image for row in rows])
    has_labels = np.array([row.labels is not None for row in rows])
    labels = np.stack([row.labels if row.labels is not None else row.image for row in rows])
    found = explain.scores(query.vector, images, labels, has_labels, alpha)
    for hit, score in zip(hits, found, strict=True):
        hit.score = float(score)
    return sorted(hits, key=lambda hit: (-(hit.score or 0.0), hit.image.pk))


def _cut(
    query: QueryVector, hits: list[Hit], parts: dict[int, RowVectors], min_score: float, *, span: int
) -> tuple[list[Hit], int]:
    """The hits whose hybrid score reaches ``min_score``, and how many of the first ``span``
    did not. With an emphasis the hybrid score is recomputed from the stored parts."""

    rescored = [hit.image.pk for hit in hits if hit.image.pk in parts]
    hybrid = dict(zip(rescored, explain.explain_many(query, [parts[pk] for pk in rescored]), strict=True))
    kept = [
        hit
        for hit in hits
        if (hybrid[hit.image.pk].score if hit.image.pk in hybrid else hit.score or 0.0) >= min_score
    ]
    kept_ids = {hit.image.pk for hit in kept}
    return kept, sum(1 for hit in hits[:span] if hit.image.pk not in kept_ids)


def _explain(query: QueryVector, shown: list[Hit], alpha: float | None) -> None:
    """Each shown hit's explanation, whose parts add up to the score it then shows. The label
    names of the hits come in the same read: loading them for every over-fetched row, or as
    Label objects, is a large share of a search's time."""
    parts = rows_vectors([hit.image.pk for hit in shown], images=[hit.image for hit in shown])
    explained = [
        hit
        for hit in shown
        if hit.image.pk in parts and parts[hit.image.pk].image.shape == query.vector.shape[1:]
    ]
    for hit, why in zip(
        explained,
        explain.explain_many(query, [parts[h.image.pk] for h in explained], alpha=alpha),
        strict=True,
    ):
        hit.why = why
        hit.score = why.score


def images_browse(
    *,
    labels: Sequence[str] = (),
    without_labels: Sequence[str] = (),
    page: int = 1,
    page_size: int | None = None,
) -> ResultPage:
    """Ready images carrying every one of ``labels`` (all images when none) and none of
    ``without_labels``, newest first (by the date taken, the upload time where there is none).

    No query vector: needs neither the model nor the index, so it works while they are down.
    """
    page_size = page_size or PAGE_SIZE
    start = _check_paging(page, page_size, "date")
    label_ids = _label_ids(labels)
    hits: list[Hit] = []
    if label_ids is not None:
        rows = with_labels(Image.objects.ready().for_display(), label_ids)
        rows = rows_without_labels(rows, _label_ids_any(without_labels)).newest_first()
        hits = [Hit(image, None) for image in rows[start : start + page_size + 1]]
    return ResultPage(
        hits=hits[:page_size],
        page=page,
        page_size=page_size,
        has_next=len(hits) > page_size,
        generation=vector_store().generation(),
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


def _label_ids_any(names: Sequence[str]) -> list[int]:
    """Ids of the labels named (any case) that exist."""
    return list(Label.objects.named_any(names).values_list("pk", flat=True)) if names else []


def _label_ids(names: Sequence[str]) -> list[int] | None:
    """Ids of the labels named (any case); None when one of them does not exist."""
    ids: list[int] = []
    for name in dict.fromkeys(n for n in names if n.strip()):
        pk = Label.objects.named(name).values_list("pk", flat=True).first()
        if pk is None:
            return None
        ids.append(pk)
    return ids
