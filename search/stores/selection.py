"""Which vector store serves: the one module that knows both and reads the setting."""

from __future__ import annotations

from django.conf import settings

from .base import VectorStore
from .faiss_store import FaissStore
from .pgvector_store import PgvectorStore

_STORES: dict[str, VectorStore] = {"faiss": FaissStore(), "pgvector": PgvectorStore()}


def enabled() -> bool:
    """Whether pgvector, not FAISS, is the vector store (read at each call: tests switch it)."""
    return settings.IMAGESEARCH_VECTOR_BACKEND == "pgvector"


def vector_store() -> VectorStore:
    """The store ``IMAGESEARCH_VECTOR_BACKEND`` names (read at each call: tests switch it)."""
    return _STORES["pgvector" if enabled() else "faiss"]
