"""The JSON API: the API object (:mod:`api.app`) with every endpoint registered on it
(:mod:`api.routes`). Each endpoint validates, calls a service, and shapes the answer; the logic
lives in the services the web pages use too."""

from __future__ import annotations

from .app import api
from .routes import clip_retrieval, images, review, search  # noqa: F401 - they register their endpoints

__all__ = ["api"]
