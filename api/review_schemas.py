"""The shapes of the staff review endpoints: near-duplicates, label suggestions, mislabels."""

from __future__ import annotations

from datetime import datetime

from ninja import Field, Schema

from .schemas import ImageDetailOut, ImageOut


class DuplicatesParams(Schema):
    offset: int = Field(0, ge=0, le=10**9, description="How many groups to skip.")
    limit: int = Field(50, ge=1, le=500, description="How many groups.")


class DuplicateImageOut(ImageOut):
    file_bytes: int | None = Field(description="The stored file's size (null when it is missing).")
    similarity: float = Field(description="Its highest cosine to another image of the group.")


class DuplicateGroupOut(Schema):
    id: int
    scan: int = Field(description="The scan that found it.")
    top_similarity: float
    least_similarity: float = Field(description="The lowest cosine of the pairs that joined the group.")
    images: list[DuplicateImageOut]


class DuplicateScanOut(Schema):
    number: int = Field(description="How many scans have finished (0: none yet).")
    running: bool
    done: int = Field(description="While a scan runs: images whose neighbours were searched.")
    total: int = Field(description="While a scan runs: images it compares.")
    queued: bool
    finished_at: datetime | None
    seconds: float | None
    images: int = Field(description="Images the last scan compared.")
    threshold: float | None = Field(description="The cosine the last scan used.")
    setting: float = Field(description="`IMAGESEARCH_DUPLICATE_THRESHOLD` now (the next scan's).")
    model: str
    groups: int = Field(description="Groups with two images or more.")
    last_error: str


class DuplicatesOut(Schema):
    scan: DuplicateScanOut
    groups: list[DuplicateGroupOut] = Field(description="Best first, as on the admin's page.")
    offset: int
    has_more: bool


# --- Label suggestions and likely mislabels (staff) --------------------------------------------


class SuggestionsParams(Schema):
    min_confidence: float = Field(0.0, ge=0.0, le=1.0, description="Only suggestions at least this sure.")
    offset: int = Field(0, ge=0, le=10**9, description="How many images to skip.")
    limit: int = Field(50, ge=1, le=500, description="How many images.")


class SuggestionOut(Schema):
    id: int
    label: str
    confidence: float = Field(
        description="The chance that the label is right, calibrated on the images that already carry labels."
    )


class SuggestedImageOut(Schema):
    image: ImageDetailOut
    suggestions: list[SuggestionOut] = Field(description="Best first.")


class LabellingPassOut(Schema):
    finished_at: str | None
    running: bool
    queued: bool
    images: int
    labels: int
    suggestions: int
    mislabels: int
    seconds: float | None
    note: str = Field(description="Why nothing was suggested, when nothing was (too few labelled images).")
    error: str


class SuggestionsOut(Schema):
    labelling: LabellingPassOut
    images: list[SuggestedImageOut] = Field(
        description="Images without labels first, then by best confidence."
    )
    offset: int
    has_more: bool


class AcceptAboveIn(Schema):
    min_confidence: float = Field(
        ge=0.0, le=1.0, description="Accept every open suggestion at least this sure."
    )


class AcceptedOut(Schema):
    images: int
    labels: int


class MislabelOut(Schema):
    id: int
    image: ImageDetailOut
    label: str = Field(description="The label it carries that its picture is far from.")
    better: str = Field(description="The label that fits it better.")
    spreads: float = Field(
        description="How many of its label's own spreads below the label's typical picture."
    )
    better_confidence: float


class MislabelsOut(Schema):
    labelling: LabellingPassOut
    mislabels: list[MislabelOut]
    offset: int
    has_more: bool
