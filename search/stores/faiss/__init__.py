"""The on-disk FAISS search index: write generations atomically, serve them memory-mapped.

This package owns the index directory. It knows nothing about Django: it takes ids and
unit vectors and gives back ids and inner-product scores. Importing it is cheap and never
imports ``faiss`` (loaded on first use), ``torch`` or Django.

Layout of an index directory::

    CURRENT              "42\\n": the generation readers serve (moved atomically)
    gen-000042.faiss     the index, of the kind its manifest names ("flat", "ivf", "hnsw")
    gen-000042-picture.faiss  the same rows' image vectors alone, same kind (``pictures``)
    gen-000042.json      its manifest (see :class:`Manifest`), both files' checksums
    gen-000041.faiss     the previous generation, kept for readers that still map it
    gen-000041.json
    LOCK                 flock(2) target of :func:`writer_lock`; never deleted

Contract (see docs/architecture.md, 'Invariants'):

* Index files are never changed in place. A generation's files are published under a
  temporary name, fsynced and renamed, and only then does ``CURRENT`` move, the same way:
  a reader never sees a partial file, and a crash leaves the previous generation current.
* Generation numbers only grow; a name is never reused within a directory.
* One writer at a time (:func:`writer_lock`); :func:`write_generation` takes it itself.
* A reader (:class:`IndexReader`, one per process and directory through
  :func:`get_reader`) verifies a generation once before serving it and never serves a
  damaged, truncated, missing or mismatched one: it keeps serving what it has and reports
  the problem in ``last_error``.
* Everything here is derived data: the directory can be deleted at any moment and rebuilt
  from the database.

The names below are the whole public surface; the modules behind them (``kinds``,
``flat_scan``, ``files``, ...) are internals that tests and benchmarks may reach into.
"""

from __future__ import annotations

from .errors import IndexLocked, IndexUnavailable, InvalidGeneration, SearchIndexError
from .kinds import KINDS
from .lock import writer_lock
from .manifest import FORMAT_VERSION, Manifest, read_current_manifest
from .neighbours import close_pairs
from .reader import IndexReader
from .readers import get_reader, reset_readers
from .tuning import AUTO_FLAT_MAX_VECTORS, RECALL_TARGET
from .writer import write_generation

__all__ = [
    "AUTO_FLAT_MAX_VECTORS",
    "RECALL_TARGET",
    "FORMAT_VERSION",
    "KINDS",
    "IndexLocked",
    "IndexReader",
    "IndexUnavailable",
    "InvalidGeneration",
    "Manifest",
    "SearchIndexError",
    "close_pairs",
    "get_reader",
    "read_current_manifest",
    "reset_readers",
    "write_generation",
    "writer_lock",
]
