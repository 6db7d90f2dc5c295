"""Fixtures for tests that call the API over HTTP, against pytest-django's live server."""

from __future__ import annotations

import pytest


@pytest.fixture
def served_library(live_server, library) -> dict[str, list[int]]:
    """The small indexed library, committed (the live server makes the test transactional) so
    that the live server's thread sees it."""
    return library
