"""Refuse request bodies over their path's limit, on Content-Length, before anything reads them.

Django writes a multipart body to temporary files as soon as anything reads ``request.POST``
(CsrfViewMiddleware does, before any view), so the limit is checked here first. The staff
upload paths take ``IMAGESEARCH_MAX_REQUEST_BYTES`` from staff (a signed-in staff session, or an
API token on ``POST /api/images``); every other body, and an upload path's body from anyone
else, is held to ``IMAGESEARCH_MAX_PUBLIC_REQUEST_BYTES``. A body without Content-Length
(chunked) is not read by Django at all.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from api.auth import caller
from search.query import throttle


def _upload_paths() -> frozenset[str]:
    return frozenset({reverse("admin:gallery_image_upload"), reverse("api:images_upload")})


class RequestSizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self._uploads: frozenset[str] | None = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return HttpResponse("Bad Content-Length.", status=400, content_type="text/plain")
        public, uploads = (
            settings.IMAGESEARCH_MAX_PUBLIC_REQUEST_BYTES,
            settings.IMAGESEARCH_MAX_REQUEST_BYTES,
        )
        if length > min(public, uploads):  # the common small request costs no look-up
            limit = uploads if self._staff_upload(request) else public
            if length > limit:
                return HttpResponse(
                    f"The request is {length / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB. "
                    + (
                        "Upload fewer or smaller files at a time."
                        if limit != public
                        else "Send a smaller image."
                    ),
                    status=413,
                    content_type="text/plain",
                )
        return self.get_response(request)

    def _staff_upload(self, request: HttpRequest) -> bool:
        if self._uploads is None:
            self._uploads = _upload_paths()
        if request.method != "POST" or request.path not in self._uploads:
            return False
        user = caller(request)  # the session's user, or the one an API token acts for
        return user is not None and user.is_active and user.is_staff


class RateLimitMiddleware:
    """Per-client rate limits of the search endpoints (search.query.throttle), counted here, before
    CSRF, forms, queries or templates: a flood of refused requests costs one cache read each.
    The answer is a 429 with Retry-After and the sentence: a page for the search page, JSON
    (``{"error": ...}``, as every API error) for ``/api/search`` and ``/knn-service``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        kind = throttle.request_kind(request)
        if kind is None or not settings.RATELIMIT_ENABLE:
            return self.get_response(request)
        user = caller(request)
        try:
            throttle.check(
                request, kind, user=user, token=user is not None and not request.user.is_authenticated
            )
        except throttle.RateLimited as exc:
            if request.path == "/":
                response = render(request, "429.html", {"error": str(exc)}, status=429)
            else:
                response = JsonResponse({"error": str(exc)}, status=429)
            response["Retry-After"] = str(exc.retry_after)
            return response
        return self.get_response(request)
