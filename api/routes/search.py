"""Search: by words, by an image or both, more like this, labels; and one image."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import File, Form, Query, UploadedFile

from search.query import queries

from .. import schemas as s
from ..app import ImageId, api, errors, image_out
from ..auth import caller_sees_unindexed, require_search_access


def _search(request: HttpRequest, params: s.SearchParams, image: UploadedFile | None) -> dict:
    require_search_access(request)
    query = queries.search_query_build(
        text=params.text,
        image=image,
        image_token=params.image_token,
        like=params.image_id,
        labels=params.labels,
        sort=params.sort,
        image_weight=params.weight,
        exclude=params.exclude,
        alpha=params.alpha,
        min_precision=params.min_precision,
    )
    hits, has_more, result, query = queries.run_slice(query, offset=params.offset, limit=params.k)
    return {
        "results": [image_out(request, hit.image, hit.score, hit.why) for hit in hits],
        "offset": params.offset,
        "k": params.k,
        "has_more": has_more,
        "generation": result.generation,
        "image_token": query.image_token or None,
        "notices": result.notices,
        "excluded": list(query.excluded),
        "cutoff": _cutoff_out(result.cutoff),
        "hidden": result.hidden,
    }


def _cutoff_out(found) -> dict | None:
    if found is None or found.threshold is None:
        return None
    return {"min_score": found.threshold, "min_precision": found.level, "kind": found.kind}


@api.get("/api/search", response={200: s.SearchOut, **errors(400, 401, 404, 429, 503)}, tags=["search"])
def search_get(request: HttpRequest, params: Query[s.SearchParams]):
    """Search by words (`text`), by an indexed image (`image_id`: more like this), by an earlier
    uploaded image (`image_token`), or browse `labels`; filter by `labels`, `sort`, page with
    `offset` and `k`. Leave words out (`exclude`), move the emphasis between the picture and the
    labels (`alpha`); each result's `why` splits its score into its picture and label parts."""
    return _search(request, params, None)


@api.post("/api/search", response={200: s.SearchOut, **errors(400, 401, 404, 429, 503)}, tags=["search"])
def search_post(request: HttpRequest, image: File[UploadedFile], params: Form[s.SearchParams]):
    """The same as `GET /api/search`, with an uploaded query `image` (multipart). With `text` too,
    the query is the weighted hybrid of both (`weight` is the image's share). The answer's
    `image_token` pages through the image's results without uploading it again."""
    return _search(request, params, image)


@api.get("/api/labels", response={200: list[s.LabelOut], **errors(400, 401)}, tags=["search"])
def labels_list(request: HttpRequest):
    """The labels in use, by how many indexed images carry them."""
    require_search_access(request)
    return [{"name": name, "images": n} for name, n in queries.popular_labels(limit=10_000)]


@api.get(
    "/api/images/{image_id}",
    response={200: s.ImageDetailOut, **errors(400, 401, 404)},
    tags=["images"],
)
def image_get(request: HttpRequest, image_id: ImageId):
    """One image (staff also see pending and failed ones, with the reason)."""
    require_search_access(request)
    image = queries.image_for(image_id, include_unindexed=caller_sees_unindexed(request))
    return image_out(request, image)
