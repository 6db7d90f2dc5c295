"""The calibration the worker runs after a rebuild that served requests: sample the library,
score its labels as queries (search.calibration.precision), record the curves
(search.models.Calibration). Never inside a request.

Its cost is bounded whatever the library's size: at most ``MAX_SAMPLE`` images are read (their
ids drawn uniformly from every searchable row, then their vectors a chunk at a time) and at most
``precision.MAX_LABELS`` labels, with ``precision.IMAGE_QUERIES_PER_LABEL`` image queries each,
score them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from django.db import connection
from django.utils import timezone

from gallery.models import Image, Label

from .. import encoder
from ..models import Calibration
from . import precision

logger = logging.getLogger(__name__)

MAX_SAMPLE = 20_000
READ_CHUNK = 2_000  # ids per query when reading the sample's vectors and labels
SEED = 0  # the same library gives the same sample and the same calibration


@dataclass
class CalibrationReport:
    ran: bool
    library: int = 0
    sample: int = 0
    labels: int = 0
    note: str = ""
    error: str = ""
    seconds: float = 0.0


def library_calibrate() -> CalibrationReport:
    """Calibrate the cut-off on the library and replace the stored calibration. A failure is
    logged and recorded on the row (``last_error``; the last curves stay), never raised: the
    rebuild that asked has done its work. Run twice: the same rows give the same calibration."""
    started = time.monotonic()
    try:
        report = _calibrate(started)
    except Exception as exc:  # noqa: BLE001 - shown on the status page, the rebuild stands
        logger.exception("the cut-off calibration failed")
        error = f"{type(exc).__name__}: {exc}"
        try:
            Calibration.get()
            Calibration.objects.filter(pk=1).update(last_error=error)
        except Exception:  # noqa: BLE001 - the database itself failed: the log says it
            logger.exception("could not record the calibration's failure")
        return CalibrationReport(ran=False, error=error, seconds=time.monotonic() - started)
    logger.info(
        "calibration: %d labels of a sample of %d images (of %d) in %.2fs%s",
        report.labels,
        report.sample,
        report.library,
        report.seconds,
        f": {report.note}" if report.note else "",
    )
    return report


def _calibrate(started: float) -> CalibrationReport:
    image_model, text_model = encoder.model_name(), encoder.text_model_name()
    rows = Image.objects.searchable(image_model).filter(image_vector__isnull=False)
    every = _ids(rows)
    rng = np.random.default_rng(SEED)
    chosen = np.sort(rng.choice(every, size=MAX_SAMPLE, replace=False)) if len(every) > MAX_SAMPLE else every
    ids, hybrids, pictures = _vectors(rows, chosen)
    label_ids, text, members = _labels(ids, text_model=text_model, dim=hybrids.shape[1])
    estimate = precision.label_queries(hybrids, pictures, members, text, seed=SEED)
    seconds = time.monotonic() - started
    Calibration.get()
    Calibration.objects.filter(pk=1).update(
        calibrated_at=timezone.now(),
        seconds=seconds,
        image_model=image_model,
        text_model=text_model,
        library=len(every),
        sample=len(ids),
        labels=estimate.labels,
        eligible_labels=estimate.eligible,
        text_queries=estimate.queries.get("text", 0),
        image_queries=estimate.queries.get("image", 0),
        curves={kind: curve.to_json() for kind, curve in estimate.curves.items()},
        note=estimate.note,
        last_error="",
    )
    return CalibrationReport(
        ran=True,
        library=len(every),
        sample=len(ids),
        labels=estimate.labels,
        note=estimate.note,
        seconds=seconds,
    )


def _ids(rows) -> np.ndarray:
    """Every id of ``rows``, read a chunk at a time with a plain cursor (a million ids through
    the ORM's per-row iteration would cost most of the calibration)."""
    sql, params = rows.order_by("pk").values_list("pk").query.sql_with_params()
    parts = []
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(50_000):
            parts.append(np.fromiter((pk for (pk,) in chunk), dtype=np.int64, count=len(chunk)))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _vectors(rows, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, hybrids, image vectors) of the rows of ``ids`` still there, in id order. Rows whose
    vectors are not of the most common size (a model's vectors mid-change) are left out."""
    found: list[tuple[int, bytes, bytes]] = []
    for start in range(0, len(ids), READ_CHUNK):
        chunk = [int(pk) for pk in ids[start : start + READ_CHUNK]]
        found.extend(
            rows.filter(pk__in=chunk).order_by("pk").values_list("pk", "hybrid_vector", "image_vector")
        )
    sizes = [len(hybrid) for _, hybrid, picture in found if len(hybrid) == len(picture)]
    if not sizes:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    size = max(set(sizes), key=sizes.count)
    kept = [(pk, hybrid, picture) for pk, hybrid, picture in found if len(hybrid) == len(picture) == size]
    hybrids = encoder.from_bytes(b"".join(bytes(h) for _, h, _ in kept)).reshape(len(kept), -1)
    pictures = encoder.from_bytes(b"".join(bytes(p) for _, _, p in kept)).reshape(len(kept), -1)
    return np.array([pk for pk, _, _ in kept], np.int64), hybrids, pictures


def _labels(ids: np.ndarray, *, text_model: str, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label ids, their L2-normalised text vectors, (image row, label row) pairs) of the labels
    the sampled images carry whose text vector the current text model made."""
    links = Image.labels.through.objects
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(ids), READ_CHUNK):
        chunk = [int(pk) for pk in ids[start : start + READ_CHUNK]]
        pairs.extend(links.filter(image_id__in=chunk).values_list("image_id", "label_id"))
    carried = sorted({label for _, label in pairs})
    vectors: dict[int, np.ndarray] = {}
    for start in range(0, len(carried), READ_CHUNK):
        chunk = carried[start : start + READ_CHUNK]
        labels = Label.objects.filter(pk__in=chunk, vector__isnull=False, vector_model=text_model)
        for pk, blob in labels.values_list("pk", "vector"):
            vector = encoder.from_bytes(blob)
            if len(vector) == dim:
                vectors[pk] = vector
    label_ids = np.array(sorted(vectors), np.int64)
    if not len(label_ids) or not len(pairs):
        return label_ids, np.zeros((0, dim), np.float32), np.zeros((0, 2), np.int64)
    text = np.stack([vectors[pk] for pk in label_ids]).astype(np.float32)
    text /= np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
    row_of_label = {int(pk): row for row, pk in enumerate(label_ids)}
    row_of_image = {int(pk): row for row, pk in enumerate(ids)}
    members = np.array(
        [
            (row_of_image[image], row_of_label[label])
            for image, label in pairs
            if label in row_of_label and image in row_of_image
        ],
        dtype=np.int64,
    ).reshape(-1, 2)
    return label_ids, text, members
