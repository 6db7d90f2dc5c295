"""Where the index is, whether it is behind the database, and what the status page shows."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Count, Max

from gallery.models import Image, Label

from . import dispatch, encoder
from .models import IndexState
from .stores import faiss as search_index
from .stores import pgvector as vectorstore


def index_dir() -> Path:
    return Path(settings.INDEX_DIR)


def index_reader() -> search_index.IndexReader:
    """This process's reader of the index (one per process, shared by every request)."""
    return search_index.get_reader(index_dir(), expected_model=encoder.model_name())


def index_dimension() -> int | None:
    """The dimension of the vectors searches run against (None while nothing is indexed)."""
    if vectorstore.enabled():
        return vectorstore.vectors_dimension(encoder.model_name())
    manifest = search_index.read_current_manifest(index_dir())
    return manifest.dim if manifest else None


def index_behind() -> bool:
    """True when the index does not hold exactly what the database says it should."""
    if vectorstore.enabled():  # the vectors are written with the rows; the sweep fills any gap
        return vectorstore.vectors_missing(encoder.model_name()).exists()
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


def index_status() -> dict[str, Any]:
    """What the admin status page shows."""
    counts = {status: 0 for status in Image.Status.values}
    for row in Image.objects.order_by().values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    if vectorstore.enabled():
        return {
            "counts": counts,
            "total": sum(counts.values()),
            "manifest": None,
            "age_seconds": None,
            "built_at": None,
            "reader": {},
            "behind": index_behind(),
            "state": IndexState.get(),
            "model": encoder.model_name(),
            "stale": Image.objects.stale(encoder.model_name()).count(),
            **_text_model_counts(),
            "model_error": encoder.last_load_error(),
            "encoder": encoder_summary(),
            "store": "pgvector",
            "pgvector": vectorstore.vectors_summary(encoder.model_name()),
            "nothing_to_rebuild": vectorstore.NOTHING_TO_REBUILD,
        }
    reader_status: dict[str, Any] = {}
    try:
        reader = index_reader()
        reader.refresh()  # a damaged CURRENT is reported even where no search has run yet
        reader_status = reader.status()
    except search_index.IndexUnavailable as exc:
        reader_status = {"last_error": str(exc)}
    manifest = search_index.read_current_manifest(index_dir())
    state = IndexState.get()
    return {
        "counts": counts,
        "total": sum(counts.values()),
        "manifest": manifest,
        "age_seconds": (time.time() - manifest.created_at) if manifest else None,
        "built_at": datetime.fromtimestamp(manifest.created_at, tz=UTC) if manifest else None,
        "reader": reader_status,
        "behind": index_behind(),
        "state": state,
        "model": encoder.model_name(),
        "stale": Image.objects.stale(encoder.model_name()).count(),
        **_text_model_counts(),
        "model_error": encoder.last_load_error(),
        "encoder": encoder_summary(),
        "store": "faiss",
    }


def encoder_summary() -> dict[str, Any]:
    """Which runtime serves in this process, where it runs, and the int8 figure when int8 is asked for."""
    described = encoder.describe()
    if described["provider"]:
        serving = f"{described['runtime']} on {described['provider']}, {described['precision']}"
    else:
        serving = f"{described['runtime']} (not loaded in this process yet)"
    return {**described, "serving": serving}


def _text_model_counts() -> dict[str, Any]:
    return {
        "text_model": encoder.text_model_name(),
        # Label vectors behind stored hybrids that another text model made (the setting changed).
        "labels_outdated": Label.objects.vectors_outdated(encoder.text_model_name()).count(),
    }


def status_summary() -> dict[str, Any]:
    """:func:`index_status` as plain JSON-able values (the admin status page polls it, the API
    serves it)."""
    status = index_status()
    manifest = status["manifest"]
    state = status["state"]
    if status["store"] == "pgvector":
        vectors = status["pgvector"]
        manifest_figures = {
            "generation": None,
            "vectors": vectors["vectors"],
            "dimension": vectors["dimension"],
            "size_bytes": vectors["size_bytes"],
            "kind": "hnsw (pgvector)",
            "requested_kind": None,
            "search_param": None,
            "search_param_value": None,
            "recall_text": None,
            "recall_image": None,
            "age_seconds": None,
        }
    else:
        manifest_figures = {
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
            "age_seconds": status["age_seconds"],
        }
    return {
        "counts": status["counts"],
        "total": status["total"],
        "stale": status["stale"],
        "model": status["model"],
        "text_model": status["text_model"],
        "labels_outdated": status["labels_outdated"],
        "model_error": status["model_error"] or "",
        "encoder": status["encoder"]["serving"],
        "int8_agreement": status["encoder"]["int8_agreement"],
        "int8_reason": status["encoder"]["int8_reason"],
        **manifest_figures,
        "behind": status["behind"],
        "rebuild_queued": state.rebuild_queued,
        "last_rebuild_seconds": state.last_rebuild_seconds,
        "index_error": status["reader"].get("last_error") or "",
    }


#: Seconds between two repair requests of one process for one damaged (or missing) generation.
REPAIR_REQUEST_SPACING = 30.0
_repairs_requested: dict[tuple[str, int | None], float] = {}


def index_repair_request(reader: search_index.IndexReader) -> None:
    """Ask for a rebuild at once (not at the next sweep) when this process finds the current
    generation damaged, or no generation at all while rows are searchable. At most once per
    generation and process every ``REPAIR_REQUEST_SPACING`` seconds, so that every search does not
    ask again."""
    if reader.failed_generation is None and reader.manifest is not None:
        return
    key = (str(reader.directory), reader.failed_generation)
    now = time.monotonic()
    if now - _repairs_requested.get(key, -1e9) < REPAIR_REQUEST_SPACING:
        return
    if reader.failed_generation is None and not Image.objects.searchable(encoder.model_name()).exists():
        return  # nothing indexed yet: nothing to repair
    _repairs_requested[key] = now
    dispatch.index_rebuild_request()


BEHIND_NOTICE = "The index is being updated; the newest changes may take a moment to show."


def search_notices() -> list[str]:
    """What a page of results says about images or changes it may be missing."""
    notices = []
    pending = Image.objects.pending().count()
    if pending:
        notices.append(f"{pending} image(s) are still being indexed and may be missing from the results.")
    if not vectorstore.enabled():  # pgvector: no index files, ready rows are searchable
        reader = index_reader()
        error = reader.last_error if reader.manifest is not None else None  # else: answered from rows
        if error:
            notices.append("The newest index could not be loaded; showing results from the previous one.")
    state = IndexState.objects.filter(pk=1).first()
    if state is not None and state.behind_requests and not pending:
        notices.append(BEHIND_NOTICE)
    return notices


def _current_generation_usable(manifest: search_index.Manifest) -> bool:
    """Whether this process's reader verified (checksum, size, manifest) and serves the
    generation ``CURRENT`` names. Waits for the verification, done once per generation."""
    reader = index_reader()
    reader.refresh()
    return reader.manifest is not None and reader.manifest.generation == manifest.generation
