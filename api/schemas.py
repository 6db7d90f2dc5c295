"""What the JSON API takes and returns; the OpenAPI description is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import BeforeValidator, StrictStr
from pydantic.json_schema import SkipJsonSchema

from gallery.labels import MAX_LABEL_LENGTH
from search.calibration.cutoffs import MAX_LEVEL, MIN_LEVEL
from search.query.queries import DEFAULT_IMAGE_WEIGHT, MAX_FILTER_LABELS, MAX_QUERY_TEXT_LENGTH
from search.query.ranking import MAX_RESULTS, PAGE_SIZE
from search.query.vectors import MAX_EXCLUDED


def _a_number(value: object) -> object:
    if isinstance(value, (str, bool)):
        raise ValueError("must be a number")
    return value


def json_int(**constraints: int) -> Any:
    """An integer of a JSON body: no "5" for 5, no true for 1 (but 5.0 is 5, as in JSON Schema).
    The constraints come before the validator, so that they reach the OpenAPI description."""
    return Annotated[int, Field(**constraints), BeforeValidator(_a_number)]


class ErrorDetail(Schema):
    loc: list[str | int]
    msg: str


class ErrorOut(Schema):
    error: str = Field(description="What went wrong, for a person.")
    detail: list[ErrorDetail] | None = Field(None, description="The invalid fields, when there are some.")


class SearchParams(Schema):
    text: str = Field(
        "",
        max_length=MAX_QUERY_TEXT_LENGTH,
        description="Words to search for (CLIP reads the first 77 tokens).",
    )
    # Optional without "or null" in the description: a query string or a form cannot send a null.
    image_id: Annotated[int, Field(ge=1, le=2**62)] | SkipJsonSchema[None] = Field(
        None, description="More like this: search with this indexed image's vector."
    )
    image_token: str | SkipJsonSchema[None] = Field(
        None,
        max_length=64,
        description="An earlier uploaded query image (its `image_token`), to page through its results; "
        "404 once it has expired (after an hour).",
    )
    weight: float = Field(
        DEFAULT_IMAGE_WEIGHT,
        ge=0,
        le=1,
        description="With words and an image together: the image's weight (0 = words only, 1 = image only).",
    )
    k: int = Field(PAGE_SIZE, ge=1, le=200, description="How many results.")
    offset: int = Field(0, ge=0, lt=MAX_RESULTS, description="How many results to skip.")
    labels: list[str] = Field(
        [],
        max_length=MAX_FILTER_LABELS,
        description="Only images carrying every one of these labels. Alone, without a query: "
        "browse those images, newest first.",
    )
    sort: Literal["relevance", "date"] = Field(
        "relevance",
        description="`relevance`: best first; `date`: the best matches, newest first (by `taken_at`, "
        "else `uploaded_at`).",
    )
    exclude: list[Annotated[str, Field(min_length=1, max_length=MAX_LABEL_LENGTH)]] = Field(
        [],
        max_length=MAX_EXCLUDED,
        description="Words to leave out: the query moves away from them, and images carrying a label "
        'equal to one of them are left out entirely. `-word` (or `-"two words"`) in `text` does the '
        "same.",
    )
    alpha: Annotated[float, Field(ge=0, le=1)] | SkipJsonSchema[None] = Field(
        None,
        description="Emphasis: rank by `alpha * cos(query, image) + (1 - alpha) * cos(query, labels)`, "
        "1 = looks like, 0 = labelled as. Absent: the stored hybrids' own ranking (their image weight, "
        "`GET /api/status`).",
    )
    min_precision: Annotated[float, Field(ge=MIN_LEVEL, le=MAX_LEVEL)] | SkipJsonSchema[None] = Field(
        None,
        description="Good matches only: leave out results scoring below the score at which, on this "
        "library's own labels (calibrated by the worker at each rebuild), this share of the results were "
        "right. 0.8 is the search page's checkbox. `cutoff` says which score that was, `hidden` how many "
        "results it left out; where the library cannot say (too few labelled images, not calibrated yet), "
        "nothing is left out and `notices` says why.",
    )


class PartShareOut(Schema):
    part: str = Field(description="`words`, `image`, `the chosen image` or `left out`.")
    picture: float
    labels: float


class ExplanationOut(Schema):
    picture: float = Field(description="The part of `score` that comes from the picture.")
    labels: float = Field(
        description="The part of `score` that comes from the labels; `picture + labels = score`."
    )
    picture_cosine: float = Field(description="Cosine of the query with the image vector.")
    labels_cosine: float | None = Field(
        description="Cosine of the query with the label vector; null for an image without labels."
    )
    picture_weight: float = Field(description="`picture = picture_weight * picture_cosine`.")
    labels_weight: float = Field(description="`labels = labels_weight * labels_cosine`.")
    parts: list[PartShareOut] = Field(
        description="For a query of several parts (words and an image, words left out): each part's "
        "share of `picture` and `labels`; they add up to them. Empty for a one-part query."
    )


class ImageOut(Schema):
    id: int
    labels: list[str]
    score: float | None = Field(None, description="Cosine similarity to the query (absent when browsing).")
    why: ExplanationOut | None = Field(
        None, description="How much of `score` comes from the picture and how much from the labels."
    )
    image_url: str = Field(description="The original, byte for byte as it was uploaded.")
    display_url: str = Field(
        description="The full-size picture in a format every browser shows: the original, or for "
        "HEIC, AVIF and TIFF a JPEG copy of it."
    )
    content_type: str = Field(description="The original's format, e.g. `image/heic`.")
    thumbnail_url: str
    page_url: str = Field(description="The image's page: full image, labels, nearest neighbours.")
    width: int
    height: int
    uploaded_at: datetime
    taken_at: datetime | None = Field(
        None,
        description="When the photo was taken (EXIF DateTimeOriginal), in the camera's own time: with "
        "its UTC offset when the camera recorded one, without one when it did not; null when the "
        "file says nothing usable. `sort=date` orders by it, by `uploaded_at` where it is null.",
    )


class ImageDetailOut(ImageOut):
    status: Literal["pending", "ready", "failed"]
    failure_reason: str


class SearchOut(Schema):
    results: list[ImageOut]
    offset: int
    k: int
    has_more: bool = Field(description="Whether results follow this page.")
    generation: int | None = Field(description="The index generation that answered.")
    image_token: str | None = Field(
        description="For an uploaded query image: send it back as `image_token` for further pages."
    )
    notices: list[str] = Field(description="States worth knowing, e.g. images still being indexed.")
    excluded: list[str] = Field(description="The words left out (`exclude` and `-word` terms of `text`).")
    cutoff: CutoffOut | None = Field(description="The cut-off `min_precision` applied; null without one.")
    hidden: int = Field(description="Results of this slice (from the first) the cut-off left out.")


class CutoffOut(Schema):
    min_score: float = Field(description="Results scoring below it were left out.")
    min_precision: float
    kind: Literal["text", "image"] = Field(description="The calibration used: of word or of image queries.")


class LabelOut(Schema):
    name: str
    images: int = Field(description="How many indexed images carry it.")


class RelabelIn(Schema):
    labels: list[Annotated[StrictStr, Field(min_length=1, max_length=MAX_LABEL_LENGTH)]] = Field(
        min_length=1,
        max_length=100,
        description="The new labels. Spaces are collapsed; a label that is blank or holds control "
        "characters is refused (400), as on the upload page.",
    )


class NamedReason(Schema):
    name: str
    reason: str


class NamedId(Schema):
    name: str
    id: int


class UploadOut(Schema):
    summary: str
    added: list[int]
    duplicates: list[NamedId]
    refused: list[NamedReason]
    queued: bool = Field(
        description="False when the background queue was unreachable (embedding is delayed)."
    )
    batch: str = Field(description="Follow the batch at /api/uploads/{batch}.")


class FailureOut(Schema):
    id: int
    name: str
    reason: str


class BatchOut(Schema):
    total: int
    pending: int
    ready: int
    failed: int
    deleted: int
    done: bool = Field(description="No image of the batch is pending any more.")
    failures: list[FailureOut]
