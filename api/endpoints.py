"""The JSON API (django-ninja: the OpenAPI description at /api/openapi.json is generated from
these signatures and :mod:`api.schemas`). Each endpoint validates, calls a service, and shapes
the answer; the logic lives in the services the web pages use too."""

from __future__ import annotations

from typing import Annotated

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from ninja import File, Form, NinjaAPI, Path, Query, Status, UploadedFile
from ninja.errors import AuthenticationError, HttpError, ValidationError

from gallery import formats
from gallery import services as gallery_services
from gallery.batches import batch_status
from gallery.forms import BulkUploadForm
from gallery.labels import InvalidLabels
from gallery.models import Image
from gallery.uploads import images_upload as gallery_images_upload
from search.duplicates import scan as duplicates
from search.errors import QueryError
from search.labelling import review
from search.query import clip_retrieval, queries
from search.status import status_summary

from . import schemas as s
from . import status_schemas
from .auth import STAFF, caller_sees_unindexed, require_search_access

api = NinjaAPI(
    title="Image search API",
    version="1",
    description=(
        "Search the image library by words, by an image, or both; upload, relabel and delete images "
        "(staff: `Authorization: Bearer <token>` from `manage.py create_api_token`, or a signed-in "
        'staff session with its CSRF token). Errors answer `{"error": "..."}` with a 4xx status, '
        "or 503 while search is unavailable (no index yet, model missing). `POST /knn-service` speaks "
        "clip-retrieval's back-end protocol."
    ),
    docs_url="/api/docs",
    openapi_url="/api/openapi.json",
    urls_namespace="api",
)

ImageId = Annotated[int, Path(ge=1, le=2**62, description="The image's id.")]
BatchToken = Annotated[str, Path(max_length=64, description="`batch` of an upload's answer.")]
SuggestionId = Annotated[int, Path(ge=1, le=2**62, description="The suggestion's id.")]
MislabelId = Annotated[int, Path(ge=1, le=2**62, description="The listed mislabel's id.")]


def errors(*codes: int) -> dict[int, type[s.ErrorOut]]:
    """Documented error answers: every one is ``{"error": "..."}``."""
    return dict.fromkeys(codes, s.ErrorOut)


def _error(request: HttpRequest, message: str, status: int, **extra) -> HttpResponse:
    return api.create_response(request, {"error": message, **extra}, status=status)


@api.exception_handler(QueryError)
def _query_error(request, exc: QueryError):
    response = _error(request, str(exc), exc.status_code)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:  # 503: no model slot free (429s come from the middleware)
        response["Retry-After"] = str(retry_after)
    return response


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    detail = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in exc.errors]
    fields = "; ".join(f"{'.'.join(d['loc'][1:]) or d['loc'][0]}: {d['msg']}" for d in detail if d["loc"])
    return _error(request, f"Invalid request: {fields or 'malformed body'}.", 400, detail=detail)


@api.exception_handler(AuthenticationError)
def _authentication_error(request, exc: AuthenticationError):
    message = str(exc) if str(exc) != "Unauthorized" else ""
    return _error(request, message or "Send 'Authorization: Bearer <token>' or sign in as staff.", 401)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return _error(request, str(exc), exc.status_code)


@api.exception_handler(Http404)
def _not_found(request, exc: Http404):
    return _error(request, str(exc) or "Not found.", 404)


@api.exception_handler(Image.DoesNotExist)
def _no_such_image(request, exc: Image.DoesNotExist):
    return _error(request, "No such image.", 404)


@api.exception_handler(InvalidLabels)
def _invalid_labels(request, exc: InvalidLabels):
    return _error(request, str(exc), 400)


def _image_out(request: HttpRequest, image: Image, score: float | None = None, why=None) -> dict:
    thumbnail = image.thumbnail.url if image.thumbnail else image.file.url
    return {
        "id": image.pk,
        "labels": image.label_names,
        "score": score,
        "why": _why_out(why) if why is not None else None,
        "image_url": request.build_absolute_uri(image.file.url),
        "display_url": request.build_absolute_uri(image.display_url),
        "content_type": image.content_type,
        "thumbnail_url": request.build_absolute_uri(thumbnail),
        "page_url": request.build_absolute_uri(reverse("image_detail", args=[image.pk])),
        "width": image.width,
        "height": image.height,
        "uploaded_at": image.uploaded_at,
        "taken_at": image.taken.local() if image.taken else None,
        "status": image.status,
        "failure_reason": image.failure_reason,
    }


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
        "results": [_image_out(request, hit.image, hit.score, hit.why) for hit in hits],
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


def _why_out(why) -> dict:
    return {
        "picture": why.picture,
        "labels": why.labels,
        "picture_cosine": why.picture_cosine,
        "labels_cosine": why.labels_cosine,
        "picture_weight": why.picture_weight,
        "labels_weight": why.labels_weight,
        "parts": [{"part": p.name, "picture": p.picture, "labels": p.labels} for p in why.shares],
    }


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
    return _image_out(request, image)


@api.post(
    "/api/images",
    auth=STAFF,
    response={200: s.UploadOut, 201: s.UploadOut, **errors(400, 401, 403)},
    tags=["images"],
    description=(
        "Upload images (`files`, one or many) and/or a zip `archive`, with `labels` (comma-separated) "
        "for all, or labels from the zip's folder names (`labels_from_dirs`); with `unlabelled`, images "
        "that get no label are stored without one (the library suggests labels for them). Validated "
        f"as on the admin upload page; accepted: {formats.description()}. 201 when some were added, 200 when "
        "all were duplicates, 400 when nothing could be added."
    ),
)
def images_upload(
    request: HttpRequest,
    labels: Form[str] = "",
    labels_from_dirs: Form[bool] = False,
    unlabelled: Form[bool] = False,
    files: File[list[UploadedFile]] = None,
    archive: File[UploadedFile] = None,
):
    """Store the uploads through the admin page's service (the description above is the API's)."""
    _require_perm(request, "gallery.add_image")
    form = BulkUploadForm(request.POST, request.FILES)
    batch = gallery_images_upload(form=form, uploaded_by=request.auth)
    if batch is None:
        raise HttpError(400, form.error_text())
    result = batch.result
    if not result.added and not result.duplicates:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in result.refused)
        raise HttpError(400, f"Nothing was added. {reasons}")
    return Status(201 if result.added else 200, {**batch.as_json(), "batch": batch.token})


@api.get(
    "/api/uploads/{batch}",
    auth=STAFF,
    response={200: s.BatchOut, **errors(400, 401, 404)},
    tags=["images"],
)
def upload_status(request: HttpRequest, batch: BatchToken):
    """How many images of one upload are pending, ready and failed (with reasons)."""
    status = batch_status(token=batch)
    if status is None:
        raise Http404("Unknown or expired upload batch.")
    return status


@api.patch(
    "/api/images/{image_id}",
    auth=STAFF,
    response={200: s.ImageDetailOut, **errors(400, 401, 403, 404)},
    tags=["images"],
)
def image_relabel(request: HttpRequest, image_id: ImageId, body: s.RelabelIn):
    """Replace an image's labels. Its hybrid is recomputed in the background from stored vectors."""
    _require_perm(request, "gallery.change_image")
    image = queries.image_for(image_id, include_unindexed=True)
    gallery_services.image_relabel(image=image, names=body.labels)
    return _image_out(request, queries.image_for(image_id, include_unindexed=True))


@api.delete(
    "/api/images/{image_id}",
    auth=STAFF,
    response={204: None, **errors(400, 401, 403, 404)},
    tags=["images"],
)
def image_delete(request: HttpRequest, image_id: ImageId):
    """Delete an image: it leaves search results at once; its files go after the commit."""
    _require_perm(request, "gallery.delete_image")
    gallery_services.images_delete(images=[queries.image_for(image_id, include_unindexed=True)])
    return Status(204, None)


@api.get(
    "/api/status", auth=STAFF, response={200: status_schemas.StatusOut, **errors(400, 401)}, tags=["status"]
)
def status(request: HttpRequest):
    """Images per status, the index generation, its size and age, whether it is behind, and the
    cut-off's calibration on the library's own labels."""
    return status_summary()


@api.get(
    "/api/duplicates",
    auth=STAFF,
    response={200: s.DuplicatesOut, **errors(400, 401, 403)},
    tags=["images"],
)
def duplicates_list(request: HttpRequest, params: Query[s.DuplicatesParams]):
    """Groups of near-duplicate images (cosine of their image vectors at or above
    `IMAGESEARCH_DUPLICATE_THRESHOLD`), as the worker's last scan found them, and the scan's
    progress; the same groups as the admin's *Near-duplicates* page."""
    _require_perm(request, "gallery.view_image")
    rows = list(duplicates.groups_listed()[params.offset : params.offset + params.limit + 1])
    groups = [
        {
            "id": group.pk,
            "scan": group.scan,
            "top_similarity": group.top_similarity,
            "least_similarity": group.least_similarity,
            "images": [
                {
                    **_image_out(request, member.image),
                    "file_bytes": duplicates.file_bytes(member.image),
                    "similarity": member.similarity,
                }
                for member in group.members.all()
            ],
        }
        for group in rows[: params.limit]
    ]
    return {
        "scan": duplicates.scan_summary(),
        "groups": groups,
        "offset": params.offset,
        "has_more": len(rows) > params.limit,
    }


@api.get(
    "/api/suggestions",
    auth=STAFF,
    response={200: s.SuggestionsOut, **errors(400, 401, 403)},
    tags=["labelling"],
)
def suggestions_list(request: HttpRequest, params: Query[s.SuggestionsParams]):
    """Images with suggested labels, as the worker's last labelling pass found them (images with
    no label first, then by their best suggestion's confidence); the admin's *Label suggestions*."""
    _require_perm(request, "gallery.view_image")
    window = params.offset + params.limit + 1
    images = list(review.review_images(min_confidence=params.min_confidence)[params.offset : window])
    shown = images[: params.limit]
    found = review.suggestions_for(shown, min_confidence=params.min_confidence)
    return {
        "labelling": review.pass_summary(),
        "images": [
            {
                "image": _image_out(request, image),
                "suggestions": [
                    {"id": x.pk, "label": x.label.name, "confidence": x.confidence}
                    for x in found.get(image.pk, [])
                ],
            }
            for image in shown
        ],
        "offset": params.offset,
        "has_more": len(images) > params.limit,
    }


@api.post(
    "/api/suggestions/{suggestion_id}/accept",
    auth=STAFF,
    response={200: s.ImageDetailOut, **errors(400, 401, 403, 404)},
    tags=["labelling"],
)
def suggestion_accept(request: HttpRequest, suggestion_id: SuggestionId):
    """Add the suggested label to its image, through the relabel service (its hybrid is recomputed
    from stored vectors in the background). 404 when it is no longer open."""
    _require_perm(request, "gallery.change_image")
    image = _reviewed(lambda: review.suggestion_accept(suggestion_id=suggestion_id))
    return _image_out(request, queries.image_for(image.pk, include_unindexed=True))


@api.post(
    "/api/suggestions/{suggestion_id}/reject",
    auth=STAFF,
    response={204: None, **errors(400, 401, 403, 404)},
    tags=["labelling"],
)
def suggestion_reject(request: HttpRequest, suggestion_id: SuggestionId):
    """Reject a suggestion: no later pass proposes that label for that image again."""
    _require_perm(request, "gallery.change_image")
    _reviewed(lambda: review.suggestion_reject(suggestion_id=suggestion_id))
    return Status(204, None)


@api.post(
    "/api/suggestions/accept",
    auth=STAFF,
    response={200: s.AcceptedOut, **errors(400, 401, 403)},
    tags=["labelling"],
)
def suggestions_accept_above(request: HttpRequest, body: s.AcceptAboveIn):
    """Accept every open suggestion at or above `min_confidence` (one relabel per image)."""
    _require_perm(request, "gallery.change_image")
    done = review.suggestions_accept_above(min_confidence=body.min_confidence)
    return {"images": done.images, "labels": done.labels}


@api.get(
    "/api/mislabels",
    auth=STAFF,
    response={200: s.MislabelsOut, **errors(400, 401, 403)},
    tags=["labelling"],
)
def mislabels_list(request: HttpRequest, params: Query[s.DuplicatesParams]):
    """Labelled images far from their label's other images (by that label's own spread), each
    with the label that fits better, as the last labelling pass found them."""
    _require_perm(request, "gallery.view_image")
    rows = list(review.mislabels_listed()[params.offset : params.offset + params.limit + 1])
    return {
        "labelling": review.pass_summary(),
        "mislabels": [
            {
                "id": m.pk,
                "image": _image_out(request, m.image),
                "label": m.label.name,
                "better": m.better.name,
                "spreads": m.spreads,
                "better_confidence": m.better_confidence,
            }
            for m in rows[: params.limit]
        ],
        "offset": params.offset,
        "has_more": len(rows) > params.limit,
    }


@api.post(
    "/api/mislabels/{mislabel_id}/keep",
    auth=STAFF,
    response={204: None, **errors(400, 401, 403, 404)},
    tags=["labelling"],
)
def mislabel_keep(request: HttpRequest, mislabel_id: MislabelId):
    """Keep the image's label as it is: no later pass lists that image with that label again."""
    _require_perm(request, "gallery.change_image")
    _reviewed(lambda: review.mislabel_keep(mislabel_id=mislabel_id))
    return Status(204, None)


def _reviewed(apply):
    try:
        return apply()
    except review.ReviewError as exc:
        raise HttpError(404, str(exc)) from None


def _require_perm(request: HttpRequest, perm: str) -> None:
    if not request.auth.has_perm(perm):
        raise HttpError(403, f"This account may not do that (it lacks the {perm!r} permission).")


# --- clip-retrieval's back-end protocol ---------------------------------------------------------


def _allow_any_origin(response: HttpResponse) -> None:
    # clip-retrieval's front end runs on its own origin and calls the back end from the browser.
    if settings.IMAGESEARCH_PUBLIC_SEARCH:
        response["Access-Control-Allow-Origin"] = "*"


@api.post(
    "/knn-service", response={200: list[s.KnnHit], **errors(400, 401, 429, 503)}, tags=["clip-retrieval"]
)
def knn_service(request: HttpRequest, body: s.KnnIn, response: HttpResponse):
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
    response={200: list[s.MetadataOut], **errors(400, 401)},
    tags=["clip-retrieval"],
)
def metadata(request: HttpRequest, body: s.MetadataIn, response: HttpResponse):
    """clip-retrieval's `/metadata`: `url` and `caption` of these ids (unknown ids are left out)."""
    require_search_access(request)
    _allow_any_origin(response)
    clip_retrieval.check_index_name(body.indice_name)
    rows = clip_retrieval.knn_metadata(ids=body.ids)
    return [{"id": pk, "metadata": _knn_meta(request, rows[pk])} for pk in body.ids if pk in rows]


def _knn_meta(request: HttpRequest, image: Image) -> dict[str, str]:
    return {"url": request.build_absolute_uri(image.file.url), "caption": ", ".join(image.label_names)}
