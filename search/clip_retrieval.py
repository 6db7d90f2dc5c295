"""clip-retrieval's back-end protocol (``POST /knn-service``, ``/indices-list``, ``/metadata``)
over this library, so that clip-retrieval's ``ClipClient`` and its front end search it unchanged.

Where this differs from clip-retrieval's own back end, and why:

* One index, :data:`INDEX_NAME`, of hybrid vectors answers both ``modality`` values (there is
  no separate caption index: labels are part of every hybrid).
* ``image_url`` is accepted only for this library's own image addresses (``/media/...``), which
  search with that image's stored image vector; other addresses are refused, never fetched
  (the server must not be made to download arbitrary URLs).
* ``use_safety_model``, ``use_violence_detector``, ``use_mclip`` and the aesthetic options are
  accepted and ignored: the library is curated by its staff and has no such models.
* ``deduplicate`` drops a result whose hybrid is at least :data:`DEDUP_SIMILARITY` similar to a
  better one (clip-retrieval's threshold). Identical files are stored once anyway.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

import numpy as np
from django.conf import settings
from django.db.models import Q

from gallery.models import Image

from . import embedding, query_vectors, ranking, status
from . import index as search_index
from .errors import QueryError

INDEX_NAME = "imagesearch"
DEDUP_SIMILARITY = 0.94


def check_index_name(name: str | None) -> None:
    if name not in (None, "", INDEX_NAME):
        raise QueryError(f"Unknown index {name!r}; this service has one: {INDEX_NAME!r}.")


def knn_vector(
    *,
    text: str | None = None,
    image_base64: str | None = None,
    image_url: str | None = None,
    embedding_input: Sequence[float] | None = None,
) -> np.ndarray:
    """The query vector, from the first of these that is given (clip-retrieval's order)."""
    if text:
        return query_vectors.query_vector_for_text(text=text)
    if image_base64:
        return query_vectors.query_vector_for_image(data=_decode_base64(image_base64))
    if image_url:
        return _vector_of_own_image(image_url)
    if embedding_input is not None:
        return _vector_from_numbers(embedding_input)
    raise QueryError("Send one of text, image (base64), image_url or embedding_input.")


def knn_search(*, vector: np.ndarray, num_result_ids: int, deduplicate: bool) -> list[ranking.Hit]:
    """The nearest ready images, best first, at most ``num_result_ids`` of them."""
    count = max(1, min(int(num_result_ids), ranking.MAX_RESULTS))
    hits = ranking.images_search(vector=vector, page=1, page_size=count).hits
    return _deduplicated(hits) if deduplicate else hits


def knn_metadata(*, ids: Sequence[int]) -> dict[int, Image]:
    """Ready images by id (others are left out): what ``/metadata`` describes."""
    return Image.objects.ready().for_display().in_bulk(list(ids)[: ranking.MAX_RESULTS])


def _decode_base64(value: str) -> bytes:
    if value.startswith("data:") and "," in value:  # a data: URL, as browsers make them
        value = value.split(",", 1)[1]
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise QueryError("image is not valid base64.") from None
    if not data:
        raise QueryError("image is empty.")
    return data


def _vector_of_own_image(url: str) -> np.ndarray:
    path = unquote(urlsplit(url).path)
    media = settings.MEDIA_URL
    name = path[len(media) :] if path.startswith(media) else ""
    row = None
    if name:
        row = (
            Image.objects.searchable(embedding.model_name())
            .filter(Q(file=name) | Q(thumbnail=name))
            .values_list("image_vector", flat=True)
            .first()
        )
    if row is None:
        raise QueryError(
            "image_url must be the address of an indexed image of this library (under "
            f"{media}); other addresses are not fetched. Send the image as base64 instead."
        )
    return embedding.from_bytes(row)


def _vector_from_numbers(numbers: Sequence[float]) -> np.ndarray:
    vector = np.asarray(numbers, dtype=np.float64)
    if vector.ndim != 1 or not vector.size or not np.isfinite(vector).all() or not vector.any():
        raise QueryError("embedding_input must be a non-zero list of finite numbers.")
    manifest = search_index.read_current_manifest(status.index_dir())
    if manifest is not None and vector.size != manifest.dim:
        raise QueryError(
            f"embedding_input has {vector.size} numbers; this index holds vectors of {manifest.dim}."
        )
    return embedding.normalize(vector.astype(np.float32).reshape(1, -1))[0]


def _deduplicated(hits: list[ranking.Hit]) -> list[ranking.Hit]:
    if len(hits) < 2:
        return hits
    blobs = dict(Image.objects.filter(pk__in=[h.image.pk for h in hits]).values_list("pk", "hybrid_vector"))
    kept: list[ranking.Hit] = []
    kept_vectors: np.ndarray | None = None  # one row per kept hit, filled in order
    for hit in hits:
        blob = blobs.get(hit.image.pk)
        if blob is None:
            continue  # deleted a moment ago
        vector = embedding.from_bytes(blob)
        if kept_vectors is None:
            kept_vectors = np.zeros((len(hits), vector.size), dtype=np.float32)
        elif kept and float(np.max(kept_vectors[: len(kept)] @ vector)) >= DEDUP_SIMILARITY:
            continue
        kept_vectors[len(kept)] = vector
        kept.append(hit)
    return kept
