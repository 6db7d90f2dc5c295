"""Serving the stored images and thumbnails."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_safe

from .permissions import search_permitted

_CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tiff": "image/tiff",
}


@require_safe
@search_permitted
def serve_media(request: HttpRequest, path: str) -> FileResponse:
    """Stored files only (generated names under MEDIA_ROOT), with their real content type.

    A reverse proxy may serve /media/ instead; this keeps a single machine self-contained.
    """
    root = Path(settings.MEDIA_ROOT).resolve()
    target = (root / path).resolve()
    if root not in target.parents or not target.is_file():
        raise Http404("No such file.")
    content_type = _CONTENT_TYPES.get(target.suffix.lower())
    if content_type is None:
        raise Http404("No such file.")
    response = FileResponse(target.open("rb"), content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "public, max-age=31536000, immutable"  # names are content hashes
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


mimetypes.add_type("image/webp", ".webp")
