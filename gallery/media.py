"""Media files without a row: found and removed by a periodic sweep.

An image's files are deleted after its row's delete commits (gallery.services.images_delete);
should that fail (storage down, permissions), the failure is only logged and the files stay.
They are never served (gallery.views.serve_media checks the row), and this sweep removes them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import PurePosixPath

from django.core.files.storage import default_storage
from django.utils import timezone

from .models import Image

logger = logging.getLogger(__name__)

# A file is stored just before its row is inserted, in the same transaction: one younger than
# this may belong to an upload still in progress (or one on another machine), and is left alone.
ORPHAN_GRACE = timedelta(hours=1)
_FOLDERS = ("images", "thumbnails", "display")
_CHUNK = 500


def _stored_names() -> Iterator[str]:
    for folder in _FOLDERS:
        try:
            shards, _ = default_storage.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for shard in sorted(shards):
            _, files = default_storage.listdir(f"{folder}/{shard}")
            for name in sorted(files):
                yield f"{folder}/{shard}/{name}"


def media_orphans_delete(*, grace: timedelta = ORPHAN_GRACE) -> int:
    """Delete stored image files, thumbnails and display copies that no row names and that are older than
    ``grace``; return how many. Safe to run at any time and twice (a second run finds nothing)."""
    cutoff = timezone.now() - grace
    deleted = 0
    chunk: list[str] = []

    def sweep(names: list[str]) -> int:
        hashes = {PurePosixPath(name).stem for name in names}
        kept: set[str] = set()
        rows = Image.objects.filter(sha256__in=hashes).values_list("file", "thumbnail", "display")
        for names_of_row in rows:
            kept.update(names_of_row)
        removed = 0
        for name in names:
            if name in kept:
                continue
            try:
                if default_storage.get_modified_time(name) > cutoff:
                    continue
                default_storage.delete(name)
            except OSError:
                logger.warning("could not delete the orphan file %s", name, exc_info=True)
                continue
            logger.info("deleted %s: no image row names it", name)
            removed += 1
        return removed

    for name in _stored_names():
        chunk.append(name)
        if len(chunk) >= _CHUNK:
            deleted += sweep(chunk)
            chunk = []
    if chunk:
        deleted += sweep(chunk)
    return deleted
