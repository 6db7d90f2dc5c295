"""Rebuilding the vector store from the rows: what it means is the store's
(:meth:`VectorStore.rebuild`): FAISS writes a new generation, pgvector has nothing to write and
counts the requests served."""

from __future__ import annotations

from ..stores.base import RebuildReport
from ..stores.selection import vector_store

__all__ = ["RebuildReport", "index_rebuild"]


def index_rebuild() -> RebuildReport:
    """Bring the store level with the rows and mark the rebuild requests served. Safe to run
    twice or concurrently: one FAISS writer at a time, the other backs off at once."""
    return vector_store().rebuild()
