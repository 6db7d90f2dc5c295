"""Pages of results: the images nearest a query vector, or a browse without one.

The store (:mod:`search.stores.selection`) finds the nearest ready rows; this module checks the
paging, turns label names into ids, orders by date and loads the label names of the page shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gallery.models import Image, Label

from .. import status
from ..errors import QueryError
from ..stores.rows import with_labels
from ..stores.selection import vector_store
from . import slots

PAGE_SIZE = 24  # results per page: the search page's grid, and the API's default
MAX_RESULTS = 1000  # deepest result a query pages to
SORTS = ("relevance", "date")
DATE_SORT_POOL = 200  # "newest first" reorders this many best matches


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
    nearest = vector_store().nearest(
        vector, needed=needed, exclude_id=exclude_id, label_ids=label_ids, slot=slots.model_slot
    )
    hits = [Hit(image, score) for image, score in nearest.found]
    generation, notices = nearest.generation, status.search_notices() + nearest.notices
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
        rows = with_labels(Image.objects.ready().for_display(), label_ids).newest_first()
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


def _label_ids(names: Sequence[str]) -> list[int] | None:
    """Ids of the labels named (any case); None when one of them does not exist."""
    ids: list[int] = []
    for name in dict.fromkeys(n for n in names if n.strip()):
        pk = Label.objects.named(name).values_list("pk", flat=True).first()
        if pk is None:
            return None
        ids.append(pk)
    return ids
