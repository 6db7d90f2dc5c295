"""Fixtures for tests that call the API over HTTP, against pytest-django's live server."""

from __future__ import annotations

import pytest

from search import services
from tests.factories import create_images


@pytest.fixture
def served_library(live_server) -> dict[str, list[int]]:
    """A small indexed library, committed so the live server's thread sees it."""
    ids = create_images([(1, ["sunset"]), (2, ["sunset"]), (3, ["bicycle"]), (4, ["zebra"]), (5, ["zebra"])])
    services.images_embed(image_ids=ids)
    services.index_rebuild()
    return {"sunset": ids[:2], "bicycle": ids[2:3], "zebra": ids[3:], "all": ids}
