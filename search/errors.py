"""Why a query got no results: the message is for the person who asked, the status code for
the page or API answer."""

from __future__ import annotations


class QueryError(ValueError):
    """A query this application cannot answer."""

    status_code = 400


class SearchUnavailable(QueryError):
    """The query is fine but search cannot answer now (no index yet, model missing)."""

    status_code = 503


class QueryTargetMissing(QueryError):
    """The query names something that is not there (any more): an image, a remembered upload."""

    status_code = 404
