"""The search page: text (GET q), image (POST image), more like this (GET like)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps

import numpy as np
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from . import services
from .forms import ImageSearchForm, TextSearchForm

QUERY_VECTOR_TTL = 3600


def search_permitted(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Public by default; with IMAGESEARCH_PUBLIC_SEARCH off, signed-in users only."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not settings.IMAGESEARCH_PUBLIC_SEARCH and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


def _remember_query_vector(data: bytes, vector: np.ndarray) -> str:
    """Keep an uploaded image's query vector so that its result pages are plain GET links."""
    token = hashlib.sha256(data).hexdigest()[:32]
    cache.set(f"qvec:{token}", vector.astype("<f4").tobytes(), QUERY_VECTOR_TTL)
    return token


def _recall_query_vector(token: str) -> np.ndarray:
    data = cache.get(f"qvec:{token}")
    if data is None:
        raise services.QueryError("That image search has expired; choose the image again.")
    return np.frombuffer(data, dtype="<f4")


@require_http_methods(["GET", "HEAD", "POST"])
@search_permitted
def search_page(request: HttpRequest) -> HttpResponse:
    context: dict[str, object] = {"query": "", "page": None, "error": None, "mode": None}
    status = 200
    form = TextSearchForm(request.GET)
    params = form.cleaned_data if form.is_valid() else {}
    try:
        if request.method == "POST":
            image_form = ImageSearchForm(request.POST, request.FILES)
            if not image_form.is_valid():
                raise services.QueryError(" ".join(e for errs in image_form.errors.values() for e in errs))
            data = image_form.cleaned_data["image"].read()
            vector = services.query_vector_for_image(data)
            context.update(mode="image", qimg=_remember_query_vector(data, vector))
            context["page"] = services.search(vector, page=1)
        elif not form.is_valid():
            raise services.QueryError("That search could not be understood: " + form.errors.as_text())
        elif params.get("like"):
            vector = services.query_vector_for_image_id(params["like"])
            context.update(mode="like", like=params["like"])
            context["page"] = services.search(vector, page=params.get("page") or 1, exclude_id=params["like"])
        elif params.get("qimg"):
            context.update(mode="image", qimg=params["qimg"])
            vector = _recall_query_vector(params["qimg"])
            context["page"] = services.search(vector, page=params.get("page") or 1)
        elif "q" in request.GET:
            context.update(mode="text", query=params.get("q", ""))
            vector = services.query_vector_for_text(params.get("q", ""))
            context["page"] = services.search(vector, page=params.get("page") or 1)
    except services.QueryError as exc:
        context["error"] = str(exc)
        status = exc.status_code
    return render(request, "search/search.html", context, status=status)
