"""clip-retrieval's back-end protocol (``POST /knn-service``, ``/indices-list``, ``/metadata``)
over this library, so that clip-retrieval's ``ClipClient`` and its front end search it unchanged.

Where this differs from clip-retrieval's own back end, and why:

* One index, :data:`INDEX_NAME`, of hybrid vectors answers both ``modality`` values (there is
  no separate caption index: labels are part of every hybrid).
* ``image_url`` is accepted only when it is exactly the address of a ready image's own file as
  this server gives it out (``Image.file.url``, relative or on this request's host); that
  image's stored image vector is the query. Other addresses are refused, never fetched (the
  server must not be made to download arbitrary URLs).
* ``use_safety_model``, ``use_violence_detector``, ``use_mclip`` and the aesthetic options are
  accepted and ignored: the library is curated by its staff and has no such models.
* ``deduplicate`` drops a result whose hybrid is at least :data:`DEDUP_SIMILARITY` similar to a
  better one (clip-retrieval's threshold). Identical files are stored once anyway.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from urllib.parse import unquote

import numpy as np
from django.conf import settings
from django.http import HttpRequest

from gallery.models import Image

from .. import encoder, status
from ..errors import QueryError
from . import ranking
from . import vectors as query_vectors

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
    request: HttpRequest | None = None,
) -> np.ndarray:
    """The query vector, from the first of these that is given (clip-retrieval's order).

    ``request`` is the one being answered: an absolute ``image_url`` must be on its host. Without
    it only the relative form of an image's address is accepted."""
    if text:
        return query_vectors.query_vector_for_text(text=text)
    if image_base64:
        return query_vectors.query_vector_for_image(data=_decode_base64(image_base64))
    if image_url:
        return _vector_of_own_image(image_url, request=request)
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
    # The query-image byte limit holds before decoding: base64 is 4 characters per 3 bytes.
    limit = settings.IMAGESEARCH_MAX_QUERY_IMAGE_BYTES
    if len(value) * 3 // 4 > limit + 3 and len("".join(value.split())) * 3 // 4 > limit + 3:
        raise QueryError(f"image is over {limit / 1e6:.1f} MB; search images are at most that.")
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise QueryError("image is not valid base64.") from None
    if not data:
        raise QueryError("image is empty.")
    return data


def _path_on_this_server(url: str, *, request: HttpRequest | None) -> str:
    """The path of ``url`` if it is an address on this server, else :class:`QueryError`.

    Either a path from this server's root (``/media/...``, not the protocol-relative
    ``//host/...``), or an absolute URL that starts with this request's own scheme and host,
    ``request.build_absolute_uri("/")`` (a host Django has checked against ALLOWED_HOSTS), letters
    in any case. Another scheme, host, port, a look-alike host or userinfo does not start that way.
    """
    if url.startswith("/") and not url.startswith("//"):
        return url
    origin = request.build_absolute_uri("/")[:-1] if request is not None else ""  # scheme://host
    if origin and url[: len(origin) + 1].lower() == f"{origin}/".lower():
        return url[len(origin) :]
    raise QueryError(
        f"image_url must be an address on this server ({origin + '/..., ' if origin else ''}or a path "
        f"such as {settings.MEDIA_URL}...); other addresses are not fetched. Send the image as "
        "base64 instead."
    )


def _vector_of_own_image(url: str, *, request: HttpRequest | None) -> np.ndarray:
    # Accepted: exactly a ready image's own file URL (``Image.file.url``, what the API and the
    # pages link), nothing that merely resolves to it. The exact comparison is what refuses
    # thumbnails, "..", percent-encoded variants, query strings and fragments alike.
    path = _path_on_this_server(url, request=request)
    media = settings.MEDIA_URL
    image = None
    if path.startswith(media):
        image = (
            Image.objects.searchable(encoder.model_name())
            .filter(file=unquote(path[len(media) :]))
            .only("file", "image_vector")
            .first()
        )
    if image is None or image.file.url != path or image.image_vector is None:
        raise QueryError(
            "image_url must be the address of an indexed image of this library: its file's URL as "
            f"this server gives it (the API's image_url, or its path {media}...), not its thumbnail; "
            "other addresses are not fetched. Send the image as base64 instead."
        )
    return encoder.from_bytes(image.image_vector)


def _vector_from_numbers(numbers: Sequence[float]) -> np.ndarray:
    vector = np.asarray(numbers, dtype=np.float64)
    if vector.ndim != 1 or not vector.size or not np.isfinite(vector).all() or not vector.any():
        raise QueryError("embedding_input must be a non-zero list of finite numbers.")
    dimension = status.index_dimension()
    if dimension is not None and vector.size != dimension:
        raise QueryError(
            f"embedding_input has {vector.size} numbers; this index holds vectors of {dimension}."
        )
    return encoder.normalize(vector.astype(np.float32).reshape(1, -1))[0]


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
        vector = encoder.from_bytes(blob)
        if kept_vectors is None:
            kept_vectors = np.zeros((len(hits), vector.size), dtype=np.float32)
        elif kept and float(np.max(kept_vectors[: len(kept)] @ vector)) >= DEDUP_SIMILARITY:
            continue
        kept_vectors[len(kept)] = vector
        kept.append(hit)
    return kept
