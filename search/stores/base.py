"""The one interface both vector stores implement, and the rules they share.

A store holds the ready rows' hybrid vectors in a form that answers "nearest to this vector"
fast: FAISS generations on one machine's disk (:mod:`search.stores.faiss_store`) or PostgreSQL +
pgvector beside the rows (:mod:`search.stores.pgvector_store`). The rows stay the truth: every
store is derived from them, and :mod:`search.stores.selection` picks the one the setting names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from gallery.models import Image

# HNSW graph degree, on either store (FAISS's "hnsw" kind, pgvector's index): high recall on
# clustered vectors. Each store keeps its own construction and search beams, measured for it.
HNSW_M = 32

# A label filter that leaves at most this many rows is answered by scoring those rows' stored
# vectors exactly, on either store: walking an index for a rare label far from the query visits
# most of it (and pgvector's scan may give up).
EXACT_FILTER_LIMIT = 5000


#: A model slot (search.query.slots.model_slot): entered around model-sized work.
Slot = Callable[[], AbstractContextManager[object]]


@dataclass
class Nearest:
    """A store's answer: (image, score) best first, the FAISS generation that answered (None on
    pgvector) and the notices the page shows about how it was answered. ``by_picture``: asked
    for with ``picture_needed``, the rows nearest by their image vectors alone (score: the cosine
    to the image vector), best first, under the same filters; empty where the store has no
    such index (an emphasised search then re-scores ``found`` alone)."""

    found: list[tuple[Image, float]]
    generation: int | None = None
    notices: list[str] = field(default_factory=list)
    by_picture: list[tuple[Image, float]] = field(default_factory=list)


@dataclass
class RebuildReport:
    """What a rebuild did. ``built``: a FAISS generation was written. ``served``: the requests it
    saw are answered (the store holds the library as of them), so the near-duplicate scan follows."""

    built: bool
    served: bool = False
    generation: int | None = None
    count: int = 0
    seconds: float = 0.0
    read_seconds: float = 0.0  # of ``seconds``: reading the vectors from the database


class VectorStore(Protocol):
    name: str  # "faiss" or "pgvector", as the setting and the status page say it
    rebuilds: bool  # whether a rebuild writes anything (staff's *Rebuild* button means something)
    nothing_to_rebuild: str  # what the *Rebuild* button answers where it does not

    def rows_ready(self, rows: Sequence[tuple[int, np.ndarray]], *, model: str, now: datetime) -> None:
        """Write the hybrids of rows just made ready, inside the transaction that marks them."""

    def nearest(
        self,
        vector: np.ndarray,
        *,
        needed: int,
        exclude_id: int | None,
        label_ids: Sequence[int] | None,
        slot: Slot,
        without_label_ids: Sequence[int] = (),
        picture_needed: int = 0,
    ) -> Nearest:
        """The ``needed`` ready images nearest to ``vector`` (a 1 x d array) that carry every label
        of ``label_ids`` (None: a label nobody carries, so none), none of ``without_label_ids``,
        and are not ``exclude_id``;
        raises SearchUnavailable when nothing can be searched. ``slot`` is held around work that
        scores every row (model-sized: a flood of such queries is refused, not run side by side).
        ``picture_needed`` > 0 (an emphasised search): the store also searches its hybrids wider
        (by its own measured factor) and fills ``Nearest.by_picture`` with up to that many rows
        nearest by their image vectors alone, under the same filters."""

    def rebuild(self) -> RebuildReport:
        """Bring the store level with the rows and mark the rebuild requests served."""

    def sweep(self, *, stale_before: datetime) -> dict[str, int]:
        """The store's own share of the periodic repair (a queued rebuild due before
        ``stale_before`` counts as lost); its figures join the sweep's."""

    def behind(self) -> bool:
        """Whether the store does not hold exactly what the rows say it should."""

    def dimension(self) -> int | None:
        """The dimension searches run against (None while nothing is stored)."""

    def generation(self) -> int | None:
        """The generation that serves now (FAISS), None where stores have none."""

    def notices(self) -> list[str]:
        """What a page of results says about the store (a damaged generation, ...)."""

    def status_fields(self) -> dict[str, Any]:
        """The store's figures for the status page and API (the keys are the same on both)."""

    def image_vectors(self, rows: Any, *, model: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, image vectors) of the rows of ``rows`` in its order, for the near-duplicate scan."""

    def warm(self) -> None:
        """Load what searches share before a web server forks its workers (FAISS: the generation)."""

    def unusable(self, connection: Any) -> Any:
        """Why this database cannot serve the store (what to install), None when it can."""

    def after_migrate(self, connection: Any) -> None:
        """Complete the store's set-up that ``migrate`` had to leave out."""
