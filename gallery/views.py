"""Serving the stored images and thumbnails."""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePosixPath

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
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
    """Stored files only (generated names in the media storage), with their real content type.

    Read through Django's storage API, so every web machine serves what any machine stored in the
    shared media storage. A reverse proxy may serve /media/ instead.
    """
    name = PurePosixPath(path)
    if name.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        raise Http404("No such file.")
    content_type = _CONTENT_TYPES.get(name.suffix.lower())
    if content_type is None:
        raise Http404("No such file.")
    try:
        if not _stays_in_local_storage(str(name)):
            raise Http404("No such file.")
        stored = default_storage.open(str(name), "rb")
    except (OSError, SuspiciousFileOperation):  # missing, a directory, or outside the storage
        raise Http404("No such file.")
    response = FileResponse(stored, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "public, max-age=31536000, immutable"  # names are content hashes
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def _stays_in_local_storage(name: str) -> bool:
    """On a file system storage: the name is a regular file inside it once links are followed (a
    link placed in the media directory never serves what it points at). Other storages hold
    objects, not links: nothing to check."""
    try:
        local = Path(default_storage.path(name))
    except NotImplementedError:
        return True
    root = Path(default_storage.path("")).resolve()
    target = local.resolve()
    return root in target.parents and target.is_file()


mimetypes.add_type("image/webp", ".webp")
