"""The API object (django-ninja: the OpenAPI description at /api/openapi.json is generated from
the endpoints' signatures and :mod:`api.schemas`), its error answers, and what the endpoints share.
The endpoints live in :mod:`api.routes`, one module per area; :mod:`api.endpoints` loads them."""

from __future__ import annotations

from typing import Annotated

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from ninja import NinjaAPI, Path
from ninja.errors import AuthenticationError, HttpError, ValidationError

from gallery.labels import InvalidLabels
from gallery.models import Image
from search.errors import QueryError

from . import schemas as s

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


def image_out(request: HttpRequest, image: Image, score: float | None = None, why=None) -> dict:
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


def require_perm(request: HttpRequest, perm: str) -> None:
    if not request.auth.has_perm(perm):
        raise HttpError(403, f"This account may not do that (it lacks the {perm!r} permission).")


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
