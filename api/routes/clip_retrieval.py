"""clip-retrieval's back-end protocol: `/knn-service`, `/indices-list`, `/metadata`."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from gallery.models import Image
from search.query import clip_retrieval

from .. import clip_retrieval_schemas as rs
from ..app import api, errors
from ..auth import require_search_access


def _allow_any_origin(response: HttpResponse) -> None:
    # clip-retrieval's front end runs on its own origin and calls the back end from the browser.
    if settings.IMAGESEARCH_PUBLIC_SEARCH:
        response["Access-Control-Allow-Origin"] = "*"


@api.post(
    "/knn-service", response={200: list[rs.KnnHit], **errors(400, 401, 429, 503)}, tags=["clip-retrieval"]
)
def knn_service(request: HttpRequest, body: rs.KnnIn, response: HttpResponse):
    """clip-retrieval's `/knn-service`: `[{id, similarity, url, caption}]`, best first. The first
    `num_images` results carry `url` and `caption`; up to `num_result_ids` carry ids only."""
    require_search_access(request)
    _allow_any_origin(response)
    clip_retrieval.check_index_name(body.indice_name)
    vector = clip_retrieval.knn_vector(
        text=body.text,
        image_base64=body.image,
        image_url=body.image_url,
        embedding_input=body.embedding_input,
        request=request,
    )
    count = max(body.num_images, body.num_result_ids or 0)
    hits = clip_retrieval.knn_search(vector=vector, num_result_ids=count, deduplicate=body.deduplicate)
    return [
        {
            "id": hit.image.pk,
            "similarity": hit.score,
            **(_knn_meta(request, hit.image) if rank < body.num_images else {}),
        }
        for rank, hit in enumerate(hits)
    ]


@api.get("/indices-list", response={200: list[str], **errors(400, 401)}, tags=["clip-retrieval"])
def indices_list(request: HttpRequest, response: HttpResponse):
    """clip-retrieval's `/indices-list`: this service has one index."""
    require_search_access(request)
    _allow_any_origin(response)
    return [clip_retrieval.INDEX_NAME]


@api.post(
    "/metadata",
    response={200: list[rs.MetadataOut], **errors(400, 401)},
    tags=["clip-retrieval"],
)
def metadata(request: HttpRequest, body: rs.MetadataIn, response: HttpResponse):
    """clip-retrieval's `/metadata`: `url` and `caption` of these ids (unknown ids are left out)."""
    require_search_access(request)
    _allow_any_origin(response)
    clip_retrieval.check_index_name(body.indice_name)
    rows = clip_retrieval.knn_metadata(ids=body.ids)
    return [{"id": pk, "metadata": _knn_meta(request, rows[pk])} for pk in body.ids if pk in rows]


def _knn_meta(request: HttpRequest, image: Image) -> dict[str, str]:
    return {"url": request.build_absolute_uri(image.file.url), "caption": ", ".join(image.label_names)}
