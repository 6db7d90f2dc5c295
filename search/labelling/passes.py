"""The labelling pass the worker runs after embedding and after label changes: read the stored image
and label vectors, score (search.labelling.scoring), replace the stored suggestions (rejected ones
stay) and likely mislabels. Never inside a request."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from gallery.models import Image, Label

from .. import dispatch, encoder, jobs
from ..file_lock import Locked, file_lock
from ..models import LabellingPass, LabelSuggestion, Mislabel
from ..stores.selection import vector_store
from . import scoring

logger = logging.getLogger(__name__)

SUGGESTIONS_PER_IMAGE = 3
MIN_CONFIDENCE = 0.1  # below this a suggestion is noise, not worth a reviewer's look
NOT_CALIBRATED = (
    "Too few labelled images to calibrate on (at least {n} labels given and {n} that were not):"
    " nothing is suggested yet."
)


@dataclass
class PassReport:
    ran: bool
    reason: str = ""
    images: int = 0
    labels: int = 0
    suggestions: int = 0
    mislabels: int = 0
    seconds: float = 0.0


def _lock_dir() -> Path:
    return Path(settings.DATA_DIR) / "labelling"


def labelling_pass() -> PassReport:
    """Suggest labels for every ready image and list the likely mislabels, replacing what the
    last pass stored; back off at once when another process runs a pass. Run twice: the second
    run computes and stores the same rows (rejections are kept)."""
    started = time.monotonic()
    try:
        with file_lock(_lock_dir() / "LOCK", blocking=False):
            # New requests from here on schedule another pass.
            seen = jobs.take(LabellingPass)
            jobs.run_started(LabellingPass)
            report = _run(started)
            jobs.finish(
                LabellingPass,
                seen=seen,
                seconds=report.seconds,
                result={
                    "images": report.images,
                    "labels": report.labels,
                    "suggestions": report.suggestions,
                    "mislabels": report.mislabels,
                    "note": report.reason,
                },
            )
    except Locked:
        logger.info("another process runs the labelling pass; backing off")
        jobs.release(LabellingPass)
        return PassReport(ran=False, reason="another pass is running")
    except Exception as exc:
        jobs.fail(LabellingPass, exc)
        raise
    if jobs.requested_since(LabellingPass, seen):
        dispatch.labelling_schedule()
    logger.info(
        "labelling: %d suggestions, %d likely mislabels among %d images and %d labels in %.2fs",
        report.suggestions,
        report.mislabels,
        report.images,
        report.labels,
        report.seconds,
    )
    return report


def _run(started: float) -> PassReport:
    model = encoder.model_name()
    ids, vectors = vector_store().image_vectors(
        Image.objects.ready().filter(embedding_model=model, image_vector__isnull=False).order_by("pk"),
        model=model,
    )
    label_ids, text = _label_vectors(encoder.text_model_name(), dim=vectors.shape[1] if len(ids) else 0)
    links = Image.labels.through.objects.filter(
        image__status=Image.Status.READY, image__embedding_model=model
    )
    members = _pairs(links, ids, label_ids)
    # Only labels some image carries can be calibrated on images that carry them.
    used = np.unique(members[:, 1])
    remap = np.full(len(label_ids), -1)
    remap[used] = np.arange(len(used))
    label_ids, text = label_ids[used], text[used]
    members = np.stack([members[:, 0], remap[members[:, 1]]], axis=1) if len(members) else members
    refused = _pairs(LabelSuggestion.objects.filter(rejected=True), ids, label_ids)
    now = timezone.now()
    found_suggestions: list[scoring.Suggestion] = []
    found_mislabels: list[scoring.Mislabel] = []
    reason = ""
    calibration = None
    if len(label_ids) and len(members):
        stats = scoring.label_stats(vectors, text, members)
        found = scoring.candidates(vectors, stats, members)
        calibration = scoring.calibrate(stats, members, found, np.unique(members[:, 0]))
        if calibration is not None:
            found_suggestions = scoring.suggestions(
                found,
                calibration,
                refused=refused,
                per_image=SUGGESTIONS_PER_IMAGE,
                min_confidence=MIN_CONFIDENCE,
            )
            found_mislabels = scoring.mislabels(vectors, stats, members, found, calibration)
    if calibration is None:
        reason = NOT_CALIBRATED.format(n=scoring.MIN_TRAINING)
    try:
        _store(found_suggestions, found_mislabels, ids=ids, label_ids=label_ids, now=now)
    except IntegrityError:
        # An image or label deleted while the pass ran: its rows fail their foreign key at commit.
        # The deletion changed the library anyway; the next pass stores what is there.
        logger.info("an image or label went during the labelling pass; asking for another")
        dispatch.labelling_request()
        reason = "Images or labels changed during the pass; another pass was requested."
    return PassReport(
        ran=True,
        reason=reason,
        images=len(ids),
        labels=len(label_ids),
        suggestions=len(found_suggestions),
        mislabels=len(found_mislabels),
        seconds=time.monotonic() - started,
    )


def _store(
    suggestions: list[scoring.Suggestion],
    mislabels: list[scoring.Mislabel],
    *,
    ids: np.ndarray,
    label_ids: np.ndarray,
    now: datetime,
) -> None:
    """Replace the open suggestions and the mislabels in one transaction. Plain ``executemany``:
    the ORM's ``bulk_create`` spent most of a pass at 100,000 images building model instances."""
    at = connection.ops.adapt_datetimefield_value(now)
    with transaction.atomic():
        kept = set(Mislabel.objects.filter(kept=True).values_list("image_id", "label_id"))
        LabelSuggestion.objects.filter(rejected=False).delete()
        _insert(
            LabelSuggestion,
            ["image", "label", "confidence", "rejected", "computed_at"],
            [(int(ids[x.image]), int(label_ids[x.label]), x.confidence, False, at) for x in suggestions],
        )
        Mislabel.objects.filter(kept=False).delete()
        _insert(
            Mislabel,
            ["image", "label", "better", "spreads", "better_confidence", "computed_at", "kept"],
            [
                (
                    int(ids[m.image]),
                    int(label_ids[m.label]),
                    int(label_ids[m.better]),
                    m.spreads,
                    m.better_confidence,
                    at,
                    False,
                )
                for m in mislabels
                if (int(ids[m.image]), int(label_ids[m.label])) not in kept
            ],
        )


def _insert(model, names: list[str], rows: list[tuple]) -> None:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(model._meta.get_field(name).column) for name in names)
    marks = ", ".join(["%s"] * len(names))
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({marks})"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 10_000):
            cursor.executemany(sql, rows[start : start + 10_000])


def _label_vectors(text_model: str, *, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, L2-normalised text vectors) of the labels whose vector the current text model made."""
    rows = list(
        Label.objects.filter(vector__isnull=False, vector_model=text_model)
        .order_by("pk")
        .values_list("pk", "vector")
    )
    rows = [(pk, encoder.from_bytes(blob)) for pk, blob in rows]
    rows = [(pk, vector) for pk, vector in rows if len(vector) == dim]
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    text = np.stack([vector for _, vector in rows]).astype(np.float32)
    text /= np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
    return np.array([pk for pk, _ in rows], np.int64), text


def _pairs(queryset, image_ids: np.ndarray, label_ids: np.ndarray) -> np.ndarray:
    """(image row, label row) of the queryset's (image_id, label_id) pairs whose image and label
    are both among those scored."""
    pairs = np.array(list(queryset.values_list("image_id", "label_id")), dtype=np.int64).reshape(-1, 2)
    if not len(pairs) or not len(label_ids) or not len(image_ids):
        return np.zeros((0, 2), np.int64)
    image_rows = np.searchsorted(image_ids, pairs[:, 0])
    order = np.argsort(label_ids)
    label_pos = np.searchsorted(label_ids[order], pairs[:, 1])
    image_rows = np.minimum(image_rows, len(image_ids) - 1)
    label_pos = np.minimum(label_pos, len(label_ids) - 1)
    label_rows = order[label_pos]
    keep = (image_ids[image_rows] == pairs[:, 0]) & (label_ids[label_rows] == pairs[:, 1])
    return np.stack([image_rows[keep], label_rows[keep]], axis=1)
