"""What query code and the status pages read of the stored calibration: the score at which a
level of precision is reached (:func:`cutoff`), and a summary of the last calibration."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from .. import encoder
from ..models import Calibration
from . import precision

KINDS = precision.KINDS
MIN_LEVEL = 0.5
MAX_LEVEL = 0.99
#: The levels the status page and the API status show.
SHOWN_LEVELS = (0.8, 0.9)
KIND_NAMES = {"text": "word", "image": "image"}

NOT_YET = "The library has not been calibrated yet: the worker calibrates after each index rebuild."
OTHER_MODEL = (
    "The calibration was made with another model ({made});"
    " the worker calibrates again after the next rebuild."
)
NOT_REACHED = "No score reaches precision {level:g} for {kind} queries on this library's own labels."

_memo_lock = threading.Lock()
_memo: dict[str, Any] = {}


@dataclass(frozen=True)
class Cutoff:
    """The score at which ``kind`` queries reach precision ``level``, or None and ``reason``."""

    kind: str
    level: float
    threshold: float | None
    reason: str = ""


def cutoff(kind: str, level: float) -> Cutoff:
    """The lowest score whose results, on this library's own labels, are at least ``level`` right.

    ``kind``: ``"text"`` for a query of words, ``"image"`` for a query image; ``level`` from
    ``MIN_LEVEL`` to ``MAX_LEVEL`` (ValueError otherwise). The threshold applies to the score a
    default search ranks by: the cosine of the query vector with the result's stored hybrid
    (keep the results scoring at or above it). ``threshold`` is None, with ``reason`` saying why,
    when the library is not calibrated yet, had too few labelled images, was calibrated with
    another image or text model than the ones serving now, or never reaches ``level``.

    Cheap enough for every search: one small read of the calibration's time, the curves parsed
    once per process per calibration.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not MIN_LEVEL <= level <= MAX_LEVEL:
        raise ValueError(f"The precision level must be from {MIN_LEVEL} to {MAX_LEVEL}, not {level}.")
    stored = _stored()
    if stored is None:
        return Cutoff(kind, level, None, NOT_YET)
    made = _made_by_another_model(stored)
    if made:
        return Cutoff(kind, level, None, OTHER_MODEL.format(made=made))
    curve = stored["curves"].get(kind)
    if curve is None:
        return Cutoff(kind, level, None, stored["note"] or NOT_YET)
    threshold = curve.threshold(level)
    if threshold is None:
        return Cutoff(kind, level, None, NOT_REACHED.format(level=level, kind=KIND_NAMES[kind]))
    return Cutoff(kind, level, threshold)


def calibration_summary() -> dict[str, Any]:
    """The last calibration as plain JSON-able values, for the status page and ``GET /api/status``:
    when, from how many labels, images and queries, the thresholds at ``SHOWN_LEVELS`` per kind,
    and ``note`` saying why there are none; ``summary`` says it in a sentence."""
    row = Calibration.objects.filter(pk=1).first()
    error = row.last_error if row is not None else ""
    if row is None or row.calibrated_at is None:
        return {**_empty(), "note": NOT_YET, "summary": NOT_YET, "error": error}
    made = _made_by_another_model({"image_model": row.image_model, "text_model": row.text_model})
    thresholds = [cutoff(kind, level) for kind in KINDS for level in SHOWN_LEVELS]
    note = OTHER_MODEL.format(made=made) if made else row.note
    summary = {
        "calibrated_at": row.calibrated_at.isoformat(),
        "seconds": row.seconds,
        "image_model": row.image_model,
        "text_model": row.text_model,
        "current": not made,
        "library": row.library,
        "sample": row.sample,
        "labels": row.labels,
        "eligible_labels": row.eligible_labels,
        "text_queries": row.text_queries,
        "image_queries": row.image_queries,
        "thresholds": [
            {"kind": c.kind, "level": c.level, "threshold": c.threshold, "reason": c.reason}
            for c in thresholds
        ],
        "note": note,
        "error": error,
    }
    return {**summary, "summary": _sentence(summary)}


def _sentence(summary: dict[str, Any]) -> str:
    if summary["note"]:
        return summary["note"]
    parts = [
        f"From {summary['labels']} labels of a sample of {summary['sample']} images"
        f" ({summary['text_queries']} word and {summary['image_queries']} image queries)."
    ]
    for kind in KINDS:
        found = [t for t in summary["thresholds"] if t["kind"] == kind]
        levels = ", ".join(
            f"precision {t['level']:g} from score {t['threshold']:.3f}"
            if t["threshold"] is not None
            else f"precision {t['level']:g} not reached"
            for t in found
        )
        parts.append(f"{KIND_NAMES[kind].capitalize()} queries: {levels}.")
    return " ".join(parts)


def _empty() -> dict[str, Any]:
    return {
        "calibrated_at": None,
        "seconds": None,
        "image_model": "",
        "text_model": "",
        "current": False,
        "library": 0,
        "sample": 0,
        "labels": 0,
        "eligible_labels": 0,
        "text_queries": 0,
        "image_queries": 0,
        "thresholds": [],
    }


def _made_by_another_model(stored: dict[str, Any]) -> str:
    """The model named in the calibration that is not serving now ('' when both are)."""
    if stored["image_model"] != encoder.model_name():
        return stored["image_model"]
    if stored["text_model"] != encoder.text_model_name():
        return stored["text_model"]
    return ""


def _stored() -> dict[str, Any] | None:
    """The last calibration's models, note and parsed curves; None before the first. One read
    of its time; the rest only when it is newer than what this process holds."""
    at = Calibration.objects.filter(pk=1).values_list("calibrated_at", flat=True).first()
    if at is None:
        return None
    with _memo_lock:
        if _memo.get("at") == at:
            return _memo["stored"]
    row = Calibration.objects.filter(pk=1).values(
        "calibrated_at", "image_model", "text_model", "note", "curves"
    )
    found = row.first()
    if found is None or found["calibrated_at"] is None:
        return None
    stored = {
        "image_model": found["image_model"],
        "text_model": found["text_model"],
        "note": found["note"],
        "curves": {kind: precision.Curve.from_json(points) for kind, points in found["curves"].items()},
    }
    with _memo_lock:
        _memo.update(at=found["calibrated_at"], stored=stored)
    return stored
