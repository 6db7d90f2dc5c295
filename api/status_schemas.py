"""What ``GET /api/status`` returns: counts, the store's and the models' figures, and the cut-off's
last calibration (search.calibration)."""

from __future__ import annotations

from typing import Literal

from ninja import Field, Schema


class StatusCounts(Schema):
    pending: int
    ready: int
    failed: int


class _StoreStatusOut(Schema):
    counts: StatusCounts
    total: int
    stale: int = Field(description="Images whose vector was made by another model.")
    model: str = Field(description="The image model (IMAGESEARCH_CLIP_MODEL).")
    text_model: str = Field(description="The model of label texts and text queries (IMAGESEARCH_TEXT_MODEL).")
    labels_outdated: int = Field(
        description="Labels of indexed images whose text vector was made by another text model."
    )
    model_error: str
    encoder: str = Field(
        description="The runtime that serves (IMAGESEARCH_ENCODER), where it runs (ONNX Runtime's "
        "execution provider or the torch device) and its precision, in the process that answered."
    )
    int8_agreement: float | None = Field(
        description="With IMAGESEARCH_ENCODER_INT8: the share of fp32's top 10 that int8 kept on this "
        "library, as measured by a worker; null until measured."
    )
    int8_reason: str = Field(description="Whether int8 serves, and why (empty when int8 is not asked for).")
    generation: int | None
    vectors: int
    dimension: int | None
    size_bytes: int | None
    kind: str | None = Field(description="The index kind built: flat (exact), ivf or hnsw.")
    requested_kind: str | None = Field(description="The kind asked for (IMAGESEARCH_INDEX_KIND), e.g. auto.")
    search_param: str | None = Field(description="An approximate index's tuned search parameter.")
    search_param_value: int | None
    recall_text: float | None = Field(
        description="recall@10 against exact results on text queries (the labels' text vectors); "
        "null for the exact flat kind."
    )
    recall_image: float | None = Field(
        description="recall@10 against exact results on image queries (stored image vectors)."
    )
    age_seconds: float | None
    behind: bool = Field(description="Whether the index lags behind the database.")
    rebuild_queued: bool
    last_rebuild_seconds: float | None
    index_error: str


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


class StatusOut(_StoreStatusOut):
    """``GET /api/status``."""

    calibration: CalibrationOut = Field(
        description="The cut-off's calibration on the library's own labels, made by the worker after each "
        "rebuild."
    )
