"""What ``GET /api/status`` returns beyond :class:`api.schemas.StatusOut`: the cut-off's last
calibration (search.calibration)."""

from __future__ import annotations

from typing import Literal

from ninja import Field, Schema

from . import schemas


class CalibrationThresholdOut(Schema):
    kind: Literal["text", "image"] = Field(description="The kind of query: words (text) or an image.")
    level: float = Field(description="The precision level.")
    threshold: float | None = Field(
        description="The lowest score (cosine of the query with a result's hybrid vector) whose results, "
        "on the library's own labels, were at least `level` right; null when there is none (see `reason`)."
    )
    reason: str = Field(description="Why there is no threshold (empty when there is one).")


class CalibrationOut(Schema):
    calibrated_at: str | None = Field(
        description="When the worker last calibrated (ISO 8601); null before the first."
    )
    seconds: float | None = Field(description="How long that calibration took.")
    image_model: str
    text_model: str
    current: bool = Field(description="Whether it was made with the image and text models serving now.")
    library: int = Field(description="Searchable images the sample was drawn from.")
    sample: int = Field(description="Images every calibration query scored (a uniform sample, capped).")
    labels: int = Field(description="Labels that served as queries (those with enough images, capped).")
    eligible_labels: int = Field(description="Labels with enough images in the sample.")
    text_queries: int
    image_queries: int
    thresholds: list[CalibrationThresholdOut] = Field(
        description="Per kind of query, at precision 0.8 and 0.9."
    )
    note: str = Field(
        description="Why there are no thresholds (too few labelled images, another model); empty otherwise."
    )
    error: str = Field(
        description="The last calibration's failure, if it failed (the previous thresholds stay)."
    )
    summary: str = Field(description="The calibration in a sentence, as the status page shows it.")


class StatusOut(schemas.StatusOut):
    """``GET /api/status``: :class:`api.schemas.StatusOut` and the cut-off's calibration."""

    calibration: CalibrationOut = Field(
        description="The cut-off's calibration on the library's own labels, made by the worker after each "
        "rebuild."
    )
