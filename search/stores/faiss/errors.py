"""The errors the index raises on purpose."""

from __future__ import annotations


class SearchIndexError(Exception):
    """Base class of every error the index package raises on purpose."""


class IndexUnavailable(SearchIndexError):
    """Nothing can be served: no generation has been written yet, or none is valid."""


class IndexLocked(SearchIndexError):
    """Another writer holds the index lock (raised by ``writer_lock(blocking=False)``)."""


class InvalidGeneration(SearchIndexError):
    """A generation (or the ``CURRENT`` pointer) is missing, damaged or does not match."""
