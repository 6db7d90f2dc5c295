"""A query (words, an image, an image in the library, or words and an image, with words to leave
out) as one vector and the parts it is made of. An uploaded query image is never stored: its
vector is remembered for an hour under a token (``qimg``), so that its result pages are plain
GET links."""

from __future__ import annotations

import hashlib
import logging
import re

import numpy as np
from django.core.cache import caches

from gallery.models import Image
from gallery.validation import InvalidImage, query_image_decode

from .. import encoder
from ..errors import QueryError, QueryTargetMissing, SearchUnavailable
from . import slots, text_batches
from .explain import QueryPart, QueryVector

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

QUERY_VECTOR_TTL = 3600  # seconds an uploaded image's query vector stays pageable
MAX_EXCLUDED = 5  # words left out of one query
# Words left out pull the query away from them: q = normalize(q - EXCLUDE_WEIGHT * n(left out)).
EXCLUDE_WEIGHT = 0.5
# "-word" or -"several words" in the search box: left out of the results.
_EXCLUDED_TERM = re.compile(r'(?:^|(?<=\s))-(?:"([^"]+)"|(\S+))')

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
        return text_batches.encode(cleaned)  # in a model slot, with the texts waiting beside it
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


def words_split(text: str) -> tuple[str, tuple[str, ...]]:
    """The words to look for and the terms to leave out (``-word``, ``-"two words"``) of a
    search box's text. A hyphen inside a word (``t-shirt``) is part of it."""
    left_out = tuple(
        dict.fromkeys(
            " ".join((quoted or bare).split())
            for quoted, bare in _EXCLUDED_TERM.findall(text)
            if (quoted or bare).strip()
        )
    )
    return " ".join(_EXCLUDED_TERM.sub(" ", text).split()), left_out


def image_token(data: bytes) -> str:
    """The token a query image's vector is remembered under (its content's hash)."""
    return hashlib.sha256(data).hexdigest()[:32]


def remember_image(data: bytes, vector: np.ndarray) -> str:
    token = image_token(data)
    caches["query_vectors"].set(f"qvec:{token}", np.asarray(vector, dtype="<f4").tobytes(), QUERY_VECTOR_TTL)
    return token


def recall_image(token: str) -> np.ndarray:
    data = caches["query_vectors"].get(f"qvec:{token}") if re.fullmatch(r"[0-9a-f]{32}", token) else None
    if data is None:
        raise QueryTargetMissing("That image search has expired; choose the image again.")
    return encoder.from_bytes(data)


def unit(vector: np.ndarray) -> np.ndarray:
    return encoder.normalize(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]


def leaving_out(vector: QueryVector, terms: tuple[str, ...]) -> QueryVector:
    """``vector`` pulled away from ``terms``: ``normalize(q - EXCLUDE_WEIGHT * n(mean of their
    vectors))``."""
    if not terms:
        return vector
    if len(terms) > MAX_EXCLUDED:
        raise QueryError(f"Leave out at most {MAX_EXCLUDED} words at a time.")
    away = np.mean([unit(query_vector_for_text(text=term)) for term in terms], axis=0)
    return QueryVector.combined([*vector.parts, QueryPart("left out", -EXCLUDE_WEIGHT, unit(away))])
