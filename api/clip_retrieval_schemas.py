"""The shapes of clip-retrieval's back-end protocol (`/knn-service`, `/metadata`)."""

from __future__ import annotations

from typing import Literal

from ninja import Field, Schema
from pydantic import StrictBool, StrictFloat, StrictStr

from search.query.queries import MAX_QUERY_TEXT_LENGTH
from search.query.ranking import MAX_RESULTS

from .schemas import json_int


class KnnIn(Schema):
    """clip-retrieval's ``/knn-service`` request. One of ``text``, ``image``, ``image_url`` or
    ``embedding_input``; the other fields are accepted as clip-retrieval's clients send them."""

    text: StrictStr | None = Field(None, max_length=MAX_QUERY_TEXT_LENGTH)
    image: StrictStr | None = Field(None, description="The query image, base64-encoded.")
    image_url: StrictStr | None = Field(
        None, max_length=2000, description="Only this library's own image URLs."
    )
    embedding_input: list[StrictFloat] | None = Field(None, max_length=4096)
    modality: Literal["image", "text"] = "image"
    num_images: json_int(ge=1, le=MAX_RESULTS) = 40
    num_result_ids: json_int(ge=1, le=100_000) | None = None
    indice_name: Literal["imagesearch"] | None = Field(None, description="This service's one index.")
    deduplicate: StrictBool = True
    use_safety_model: StrictBool = False
    use_violence_detector: StrictBool = False
    use_mclip: StrictBool = False
    aesthetic_score: json_int() | StrictStr | None = None
    aesthetic_weight: StrictFloat | StrictStr | None = None


class KnnHit(Schema):
    id: int
    similarity: float
    url: str | None = Field(None, description="The image (the first `num_images` results).")
    caption: str | None = Field(None, description="Its labels, comma-separated.")


class MetadataIn(Schema):
    ids: list[json_int(ge=1, le=2**62)] = Field(max_length=MAX_RESULTS)
    indice_name: Literal["imagesearch"] | None = Field(None, description="This service's one index.")


class Metadata(Schema):
    url: str
    caption: str


class MetadataOut(Schema):
    id: int
    metadata: Metadata
