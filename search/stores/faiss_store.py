"""FAISS generations on this machine's disk as the vector store (the default).

The generations themselves (files, manifests, kinds, the reader) are :mod:`search.stores.faiss`,
which knows nothing of Django; this module connects them to the rows: where the directory is,
this process's reader, whether the served generation is behind the rows, and repairs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Max

from gallery.models import Image

from .. import dispatch, encoder
from ..models import IndexState
from . import faiss as search_index
from . import faiss_build, faiss_nearest
from .base import Nearest, RebuildReport, Slot
from .rows import vectors_read


def index_dir() -> Path:
    return Path(settings.INDEX_DIR)


def index_reader() -> search_index.IndexReader:
    """This process's reader of the index (one per process, shared by every request)."""
    return search_index.get_reader(index_dir(), expected_model=encoder.model_name())


#: Seconds between two repair requests of one process for one damaged (or missing) generation.
REPAIR_REQUEST_SPACING = 30.0
_repairs_requested: dict[tuple[str, int | None, int | None], float] = {}


def index_repair_request(reader: search_index.IndexReader) -> None:
    """Ask for a rebuild at once (not at the next sweep) when this process finds the current
    generation damaged, or no generation at all while rows are searchable, or the served
    generation's picture index damaged (the generation serves; the emphasis misses its second
    source until a rebuild). At most once per generation and process every
    ``REPAIR_REQUEST_SPACING`` seconds, so that every search does not ask again."""
    served = reader.manifest
    pictures_damaged = served.generation if served is not None and reader.picture_error else None
    if reader.failed_generation is None and served is not None and pictures_damaged is None:
        return
    key = (str(reader.directory), reader.failed_generation, pictures_damaged)
    now = time.monotonic()
    if now - _repairs_requested.get(key, -1e9) < REPAIR_REQUEST_SPACING:
        return
    if reader.failed_generation is None and not Image.objects.searchable(encoder.model_name()).exists():
        return  # nothing indexed yet: nothing to repair
    _repairs_requested[key] = now
    dispatch.index_rebuild_request()


class FaissStore:
    name = "faiss"
    rebuilds = True
    nothing_to_rebuild = ""

    def rows_ready(self, rows: Sequence[tuple[int, np.ndarray]], *, model: str, now: datetime) -> None:
        """Nothing at once: the next generation reads the rows (the pipeline asks for it)."""

    def nearest(
        self,
        vector: np.ndarray,
        *,
        needed: int,
        exclude_id: int | None,
        label_ids: Sequence[int] | None,
        slot: Slot,
        without_label_ids: Sequence[int] = (),
        picture_needed: int = 0,
    ) -> Nearest:
        reader = index_reader()
        # A cheap check for a new generation; it loads in the background while this one serves.
        manifest = reader.poll()
        index_repair_request(reader)
        return faiss_nearest.nearest(
            reader,
            manifest,
            vector,
            needed=needed,
            exclude_id=exclude_id,
            label_ids=label_ids,
            without_label_ids=without_label_ids,
            slot=slot,
            picture_needed=picture_needed,
        )

    def rebuild(self) -> RebuildReport:
        return faiss_build.generation_write(index_dir())

    def sweep(self, *, stale_before: datetime) -> dict[str, int]:
        """A rebuild is scheduled when the index is behind the database: also when one stayed
        queued past its due time (dispatch sends its lost message again)."""
        unserved = IndexState.get().behind_requests  # a queued rebuild, or one whose message was lost
        rebuild = (unserved or self.behind()) and dispatch.index_rebuild_schedule()
        return {"rebuild_scheduled": int(rebuild)}

    def behind(self) -> bool:
        state = IndexState.get()
        manifest = search_index.read_current_manifest(index_dir())
        model = encoder.model_name()
        searchable = Image.objects.searchable(model)
        count = searchable.count()
        if manifest is None:
            return count > 0
        if state.behind_requests or manifest.count != count or manifest.model != model:
            return True
        if (manifest.requested_kind or manifest.kind) != settings.IMAGESEARCH_INDEX_KIND:  # setting changed
            return True
        if not _current_generation_usable(manifest):  # damaged or truncated: rebuild, which repairs
            return True
        newest = searchable.aggregate(newest=Max("hybrid_updated_at"))["newest"]
        return bool(newest and newest.timestamp() > manifest.created_at)

    def dimension(self) -> int | None:
        manifest = search_index.read_current_manifest(index_dir())
        return manifest.dim if manifest else None

    def generation(self) -> int | None:
        manifest = search_index.read_current_manifest(index_dir())
        return manifest.generation if manifest else None

    def notices(self) -> list[str]:
        reader = index_reader()
        error = reader.last_error if reader.manifest is not None else None  # else: answered from rows
        if error:
            return ["The newest index could not be loaded; showing results from the previous one."]
        return []

    def status_fields(self) -> dict[str, Any]:
        reader_status: dict[str, Any] = {}
        try:
            reader = index_reader()
            reader.refresh()  # a damaged CURRENT is reported even where no search has run yet
            reader_status = reader.status()
        except search_index.IndexUnavailable as exc:
            reader_status = {"last_error": str(exc)}
        manifest = search_index.read_current_manifest(index_dir())
        return {
            "manifest": manifest,
            "age_seconds": (time.time() - manifest.created_at) if manifest else None,
            "built_at": datetime.fromtimestamp(manifest.created_at, tz=UTC) if manifest else None,
            "reader": reader_status,
            "generation": manifest.generation if manifest else None,
            "vectors": manifest.count if manifest else 0,
            "dimension": manifest.dim if manifest else None,
            "size_bytes": manifest.size_bytes if manifest else None,
            "kind": manifest.kind if manifest else None,
            "requested_kind": (manifest.requested_kind or manifest.kind) if manifest else None,
            "search_param": manifest.param if manifest else None,
            "search_param_value": manifest.param_value if manifest else None,
            "recall_text": manifest.recall_text if manifest else None,
            "recall_image": manifest.recall_image if manifest else None,
        }

    def image_vectors(self, rows: Any, *, model: str) -> tuple[np.ndarray, np.ndarray]:
        return vectors_read(rows, "image_vector", model=model)

    def warm(self) -> None:
        index_reader().refresh()

    def unusable(self, connection: Any) -> None:
        """Why this database cannot serve the store at start-up: FAISS needs nothing of it."""
        return None

    def after_migrate(self, connection: Any) -> None:
        """Nothing to complete after ``migrate``: the generations live outside the database."""


def _current_generation_usable(manifest: search_index.Manifest) -> bool:
    """Whether this process's reader verified (checksum, size, manifest) and serves the
    generation ``CURRENT`` names. Waits for the verification, done once per generation."""
    reader = index_reader()
    reader.refresh()
    return reader.manifest is not None and reader.manifest.generation == manifest.generation
