"""PostgreSQL + pgvector as the vector store (``IMAGESEARCH_VECTOR_BACKEND=pgvector``).

The FAISS store (search.stores.faiss) keeps index generations in one machine's data directory; this one
keeps each ready image's hybrid, and its image vector alone (the picture, for an emphasis on it),
in the database beside its row (``search.models.ImageVector``), so every web and worker machine
that reaches the database searches the same vectors:

* writes go with the rows: the pipeline stores the vector in the transaction that marks the
  image ready, so it is searchable at the commit; there are no generations and nothing to rebuild;
* a search is one ORM query that filters (ready rows of the current model, label filters),
  ranks by inner product through an HNSW index of the model's dimension and limits, with
  pgvector's iterative index scans so that a filter on a rare label still fills its pages;
* a deleted image takes its vector with it (``ON DELETE CASCADE``).

``database`` checks and creates the extension and the table (the migrations and the start-up
check use it); ``store`` writes and searches. See docs/architecture.md and docs/operations.md.
"""

from __future__ import annotations

from .store import (
    EXTENSION_MINIMUM,
    emphasis_ef_search,
    hybrids_write,
    index_ensure,
    indexes_complete,
    nearest,
    vectors_backfill,
    vectors_dimension,
    vectors_missing,
    vectors_summary,
)

NOTHING_TO_REBUILD = (
    "The vectors live in PostgreSQL beside the rows (pgvector): each image is searchable as soon "
    "as it is ready, and there is no index to rebuild."
)

__all__ = [
    "EXTENSION_MINIMUM",
    "NOTHING_TO_REBUILD",
    "emphasis_ef_search",
    "hybrids_write",
    "index_ensure",
    "indexes_complete",
    "nearest",
    "vectors_backfill",
    "vectors_dimension",
    "vectors_missing",
    "vectors_summary",
]
