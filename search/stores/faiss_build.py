"""What a rebuild means on the FAISS store: write a new generation from the ready rows.

The index is derived from the rows: a rebuild reads every searchable row's hybrid and image
vectors and writes a new generation (the hybrid index, and the picture index beside it), so
running it twice, or after a crash, gives the same index (see docs/architecture.md,
'Invariants').
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from django.conf import settings

from gallery.models import Image, Label

from .. import dispatch, encoder, jobs
from ..models import IndexState
from . import faiss as search_index
from .base import RebuildReport
from .rows import hybrids_and_pictures_read

logger = logging.getLogger(__name__)


def generation_write(directory: Path) -> RebuildReport:
    """Write a new index generation from the ready rows, unless another process is writing.

    One writer at a time (a file lock): a second caller backs off at once; the writer checks at
    the end whether requests arrived while it ran and schedules one more rebuild if so.
    """
    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with search_index.writer_lock(directory, blocking=False):
            # New requests from here on schedule another rebuild.
            seen = jobs.take(IndexState)
            model = encoder.model_name()
            ids, vectors, (picture_ids, pictures) = hybrids_and_pictures_read(model=model)
            read_seconds = time.monotonic() - started
            dim = vectors.shape[1] if len(ids) else _known_dimension(directory)
            if not len(ids):
                vectors = pictures = np.zeros((0, dim), dtype=np.float32)
            manifest = search_index.write_generation(
                directory,
                ids,
                vectors,
                model=model,
                image_weight=settings.IMAGESEARCH_IMAGE_WEIGHT,
                kind=settings.IMAGESEARCH_INDEX_KIND,
                flat_max_vectors=search_index.AUTO_FLAT_MAX_VECTORS,
                picture_vectors=(picture_ids, pictures),
                **recall_probes_read(model=model, ids=ids, dim=dim),
            )
            seconds = time.monotonic() - started
            jobs.finish(IndexState, seen=seen, seconds=seconds)
    except search_index.IndexLocked:
        logger.info("another process is rebuilding the index; backing off")
        # Release the claim: the writer checks at its end whether requests arrived while it
        # ran and schedules one more rebuild, which this claim would otherwise block.
        jobs.release(IndexState)
        return RebuildReport(built=False)
    if jobs.requested_since(IndexState, seen):
        dispatch.index_rebuild_schedule()
    logger.info(
        "index generation %s: %d vectors in %.2fs (%.2fs reading the database)",
        manifest.generation,
        len(ids),
        seconds,
        read_seconds,
    )
    return RebuildReport(
        built=True,
        served=True,
        generation=manifest.generation,
        count=len(ids),
        seconds=seconds,
        read_seconds=read_seconds,
    )


def recall_probes_read(*, model: str, ids: np.ndarray, dim: int) -> dict[str, np.ndarray | None]:
    """Queries an approximate index is tuned on, made from the library itself: the labels' own
    text vectors (text queries, with their modality gap) and the image vectors of a seeded
    sample of the indexed rows (image queries). Read only when an approximate kind is built."""
    requested = settings.IMAGESEARCH_INDEX_KIND
    small = len(ids) <= search_index.AUTO_FLAT_MAX_VECTORS
    if requested == "flat" or (requested == "auto" and small):
        return {"text_queries": None, "image_queries": None}
    size = dim * 4
    labels = Label.objects.filter(vector_model=model, vector__isnull=False).order_by("pk")
    texts = [bytes(b) for b in labels.values_list("vector", flat=True)[:10_000] if b and len(b) == size]
    sample = np.random.default_rng(0).choice(ids, min(len(ids), 256), replace=False)
    images = [
        bytes(b)
        for b in Image.objects.filter(pk__in=sample.tolist()).values_list("image_vector", flat=True)
        if b is not None and len(b) == size
    ]

    def matrix(blobs: list[bytes]) -> np.ndarray | None:
        if not blobs:
            return None
        return encoder.from_bytes(b"".join(blobs)).reshape(len(blobs), dim).astype(np.float32)

    return {"text_queries": matrix(texts), "image_queries": matrix(images)}


def _known_dimension(directory: Path) -> int:
    """The model's dimension, for an empty index (loads the model if needed)."""
    try:
        return encoder.dimension()
    except encoder.ModelUnavailable:
        manifest = search_index.read_current_manifest(directory)
        return manifest.dim if manifest else 1
