"""Refuse request bodies over IMAGESEARCH_MAX_REQUEST_BYTES before anything reads them."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class RequestSizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return HttpResponse("Bad Content-Length.", status=400, content_type="text/plain")
        limit = settings.IMAGESEARCH_MAX_REQUEST_BYTES
        if length > limit:
            return HttpResponse(
                f"The request is {length / 1e6:.0f} MB; the limit is {limit / 1e6:.0f} MB. "
                "Upload fewer or smaller files at a time.",
                status=413,
                content_type="text/plain",
            )
        return self.get_response(request)
