"""PostgreSQL + pgvector as the vector store: the vectors live beside the rows (see
:mod:`search.stores.pgvector`), written in the transaction that makes a row ready, so there are
no generations and a rebuild has nothing to write."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from django.db.models import F

from gallery.models import Image

from .. import encoder
from ..errors import SearchUnavailable
from ..models import ImageVector, IndexState
from . import pgvector as vectorstore
from .base import Nearest, RebuildReport, Slot
from .pgvector import database
from .rows import no_index_message, vectors_read

logger = logging.getLogger(__name__)


class PgvectorStore:
    name = "pgvector"
    rebuilds = False
    nothing_to_rebuild = vectorstore.NOTHING_TO_REBUILD

    def rows_ready(self, rows: Sequence[tuple[int, np.ndarray]], *, model: str, now: datetime) -> None:
        vectorstore.hybrids_write(rows, model=model, now=now)

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
        """One query filters, ranks and limits; the rows come with it (nothing to re-read).
        ``picture_needed``: a second such query ranks by the pictures alone, both searching
        wider (:func:`search.stores.pgvector.store.emphasis_ef_search`)."""
        if label_ids is None:  # a label nobody carries: nothing can match
            return Nearest([])
        if picture_needed < 0:
            raise ValueError(f"picture_needed must be 0 or more, not {picture_needed}")
        model = encoder.model_name()
        wider = vectorstore.emphasis_ef_search() if picture_needed else None
        filters = {"exclude_id": exclude_id, "label_ids": label_ids, "without_label_ids": without_label_ids}
        found = vectorstore.nearest(vector[0], model=model, needed=needed, ef_search=wider, **filters)
        by_picture = []
        if picture_needed:
            by_picture = vectorstore.nearest(
                vector[0], model=model, needed=picture_needed, column="picture", ef_search=wider, **filters
            )
        if not found and not Image.objects.searchable(model).exists():
            raise SearchUnavailable(no_index_message())
        return Nearest(found, by_picture=by_picture)

    def rebuild(self) -> RebuildReport:
        """Nothing to build: the vectors are written with the rows. Requests count as served;
        ``served`` says whether there were any (the library changed since the last one)."""
        state = IndexState.get()
        served = state.behind_requests
        IndexState.objects.update(done_request=F("requested"), queued=False, last_error="")
        logger.info("rebuild requested: %s", vectorstore.NOTHING_TO_REBUILD)
        return RebuildReport(built=False, served=served)

    def sweep(self, *, stale_before: datetime) -> dict[str, int]:
        """Ready rows without their vector (embedded while FAISS was the store) are written from
        the stored hybrids, a bounded number per sweep. Rebuild requests are served at once (a
        lost rebuild message would otherwise leave the search page saying "updating")."""
        backfilled = vectorstore.vectors_backfill(encoder.model_name())
        report = self.rebuild()
        return {
            "rebuild_scheduled": 0,
            "vectors_backfilled": backfilled,
            "rebuild_served": int(report.served),
        }

    def behind(self) -> bool:
        """The vectors are written with the rows; the sweep fills any gap."""
        return vectorstore.vectors_missing(encoder.model_name()).exists()

    def dimension(self) -> int | None:
        return vectorstore.vectors_dimension(encoder.model_name())

    def generation(self) -> int | None:
        return None

    def notices(self) -> list[str]:
        return []  # no index files: ready rows are searchable

    def status_fields(self) -> dict[str, Any]:
        vectors = vectorstore.vectors_summary(encoder.model_name())
        return {
            "manifest": None,
            "age_seconds": None,
            "built_at": None,
            "reader": {},
            "pgvector": vectors,
            "nothing_to_rebuild": vectorstore.NOTHING_TO_REBUILD,
            "generation": None,
            "vectors": vectors["vectors"],
            "dimension": vectors["dimension"],
            "size_bytes": vectors["size_bytes"],
            "kind": "hnsw (pgvector)",
            "requested_kind": None,
            "search_param": None,
            "search_param_value": None,
            "recall_text": None,
            "recall_image": None,
        }

    def image_vectors(self, rows: Any, *, model: str) -> tuple[np.ndarray, np.ndarray]:
        # The image vectors stay on the rows (the vector table holds the hybrids searched).
        return vectors_read(rows, "image_vector", model=model)

    def warm(self) -> None:
        """Nothing to load: every search is one query."""

    def unusable(self, connection: Any) -> database.Unusable | None:
        return database.unusable(connection)

    def after_migrate(self, connection: Any) -> None:
        """Create the vector table if its migration ran before the extension was installed (that
        migration leaves it out then), and the HNSW indexes the stored dimensions lack (the
        picture's, in a database that had hybrids before it); a later ``migrate`` completes the
        set-up. The sweep then fills the pictures of rows written before them."""
        if connection.vendor != "postgresql":
            return
        if database.table_exists(connection):
            for name in vectorstore.indexes_complete(using=connection.alias):
                print(f"  Created the pgvector index {name}.")
            return
        with connection.schema_editor() as editor:
            reason = database.vectors_table_ensure(editor, ImageVector)
        if reason:
            print(f"  The pgvector store cannot be set up: {reason}.")
