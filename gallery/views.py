"""Serving the stored images and thumbnails."""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_safe

from . import formats
from .models import Image
from .permissions import search_permitted


@require_safe
@search_permitted
def serve_media(request: HttpRequest, path: str) -> FileResponse:
    """Stored files of existing images only (an image's file or thumbnail, by its generated
    name), with their real content type. A file whose row is gone (deleted, or left behind by a
    failed delete) is a 404, whatever the storage still holds.

    Read through Django's storage API, so every web machine serves what any machine stored in the
    shared media storage. A reverse proxy may serve /media/ instead (then it cannot know the rows:
    the orphan sweep, gallery.services.media_orphans_delete, is what removes such files).
    """
    name = PurePosixPath(path)
    if name.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        raise Http404("No such file.")
    content_type = formats.content_types_by_extension().get(name.suffix.lower())
    if content_type is None:
        raise Http404("No such file.")
    if not _belongs_to_an_image(str(name)):
        raise Http404("No such file.")
    try:
        if not _stays_in_local_storage(str(name)):
            raise Http404("No such file.")
        stored = default_storage.open(str(name), "rb")
    except (OSError, SuspiciousFileOperation):  # missing, a directory, or outside the storage
        raise Http404("No such file.")
    response = FileResponse(stored, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    if settings.IMAGESEARCH_PUBLIC_SEARCH:
        response["Cache-Control"] = "public, max-age=31536000, immutable"  # names are content hashes
    else:
        # Only signed-in users may see them: no shared cache (a CDN, a proxy) may keep a copy and
        # hand it to anyone, nor keep a deleted image for a year.
        response["Cache-Control"] = "private, no-cache"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def _belongs_to_an_image(name: str) -> bool:
    """``name`` is the file, the thumbnail or the display copy of an existing row (found by the
    content hash in its generated name: one indexed lookup)."""
    sha256 = PurePosixPath(name).stem
    if len(sha256) != 64:
        return False
    row = Image.objects.filter(sha256=sha256).values_list("file", "thumbnail", "display").first()
    return row is not None and name in row


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
mimetypes.add_type("image/heic", ".heic")
mimetypes.add_type("image/avif", ".avif")
