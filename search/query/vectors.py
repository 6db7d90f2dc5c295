"""A query (words, an image, an image in the library, or words and an image) as one vector."""

from __future__ import annotations

import logging

import numpy as np

from gallery.models import Image
from gallery.validation import InvalidImage, query_image_decode

from .. import encoder
from ..errors import QueryError, QueryTargetMissing, SearchUnavailable
from . import slots

logger = logging.getLogger(__name__)

# What anyone is told when the model cannot load. The reason (which may name files and paths of
# this machine) is for staff: the admin's Index status page, GET /api/status, the log.
MODEL_UNAVAILABLE = (
    "the search model could not be loaded; the administrators can see why on the Index status page."
)

# The longest query text any entry point accepts (the search page, the API and /knn-service refuse
# a longer one with a clear 400). The text model reads a few dozen tokens (CLIP 77, the
# multilingual text model 128), a few hundred characters; its tokenizer cuts the rest.
MAX_QUERY_TEXT_LENGTH = 1000

# Invisible but meaningful: the zero-width non-joiner spells Persian and Indic words, the joiner
# builds emoji sequences (👩‍💻). Other format characters (bidi overrides, zero-width spaces) go.
_KEPT_FORMAT_CHARS = "\t\n\u200c\u200d"


def query_text_clean(text: str) -> str:
    """Drop control characters and surplus whitespace; cut what the text model never reads."""
    text = "".join(
        ch if ch.isprintable() or ch in _KEPT_FORMAT_CHARS else " "
        for ch in text[: MAX_QUERY_TEXT_LENGTH * 4]
    )
    return " ".join(text.split())[:MAX_QUERY_TEXT_LENGTH]


def query_vector_for_text(*, text: str) -> np.ndarray:
    cleaned = query_text_clean(text)
    if not cleaned:
        raise QueryError("Type a few words to search for, or choose an image.")
    try:
        cached = encoder.cached_query_text(cleaned)
        if cached is not None:
            return cached  # no model work: no slot
        with slots.model_slot():
            return encoder.encode_query_text(cleaned)
    except encoder.ModelUnavailable:
        raise _model_unavailable() from None


def query_vector_for_image(*, data: bytes) -> np.ndarray:
    """A query image's vector; the image is bounded in bytes, format and pixels before it is
    decoded, and decoded no larger than the model needs (gallery.validation.query_image_decode).
    The decode and the encode hold one model slot (search.query.slots)."""
    with slots.model_slot():
        try:
            rgb = query_image_decode(data)
        except InvalidImage as exc:
            raise QueryError(f"That image cannot be used for search: {exc}") from None
        try:
            return encoder.encode_images([rgb])[0]
        except encoder.ModelUnavailable:
            raise _model_unavailable() from None


def _model_unavailable() -> SearchUnavailable:
    logger.warning("a query found the model unavailable: %s", encoder.last_load_error())
    return SearchUnavailable(f"Search is unavailable: {MODEL_UNAVAILABLE}")


def query_vector_for_image_id(*, image_id: int) -> np.ndarray:
    """The stored hybrid of an image in the library ("more like this")."""
    row = (
        Image.objects.searchable(encoder.model_name())
        .filter(pk=image_id)
        .values_list("hybrid_vector", flat=True)
        .first()
    )
    if row is None:
        raise QueryTargetMissing("That image does not exist (any more), or is not indexed yet.")
    return encoder.from_bytes(row)


def query_vector_combine(
    *, image_vector: np.ndarray, text_vector: np.ndarray, image_weight: float
) -> np.ndarray:
    """A query of words and an image together: ``normalize(w * n(image) + (1 - w) * n(text))``,
    the formula of the stored hybrids with the words in place of the labels."""
    if not 0.0 <= image_weight <= 1.0:
        raise QueryError("The image weight is a number from 0 to 1.")
    return encoder.combine(image_vector, [text_vector], image_weight)
