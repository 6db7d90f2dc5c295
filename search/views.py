"""The search page (words, an image or both, more like this, label filters) and image pages."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from gallery.models import Image
from gallery.permissions import search_permitted, sees_unindexed_images

from .errors import QueryError
from .forms import SearchForm
from .query import queries
from .query.queries import SearchQuery


@require_http_methods(["GET", "HEAD", "POST"])
@search_permitted
def search_page(request: HttpRequest) -> HttpResponse:
    """Words (GET), an image (POST, with or without words), "more like this", label chips."""
    form = SearchForm(request.POST if request.method == "POST" else request.GET, request.FILES or None)
    context: dict[str, object] = {"query": SearchQuery(), "page": None, "error": None}
    status, retry_after = 200, None
    if not form.is_valid():
        context["error"], status = form.error_text(), 400
    elif request.method == "POST" and not form.cleaned_data.get("image"):
        return redirect(reverse("search") + form.query().url())  # no new image: a shareable GET
    elif (query := form.query()).kind == "empty":
        context["start"] = queries.start_page(staff=request.user.is_staff)
    else:
        context["query"] = query
        try:
            result, query = queries.run(query, page=form.cleaned_data.get("page") or 1)
        except QueryError as exc:
            context["error"], status = str(exc), exc.status_code
            retry_after = getattr(exc, "retry_after", None)
        else:
            chips = queries.label_chips(query, result.hits)
            links = queries.result_links(query, result)
            context.update(query=query, page=result, chips=chips, links=links)
    response = render(request, "search/search.html", context, status=status)
    if retry_after is not None:  # 503: no model slot free
        response["Retry-After"] = str(retry_after)
    return response


@require_safe
@search_permitted
def image_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One image: full size, its labels and its nearest neighbours."""
    try:
        image = queries.image_for(pk, include_unindexed=sees_unindexed_images(request.user))
    except Image.DoesNotExist:
        raise Http404("No such image.") from None
    hits, problem = queries.neighbours(image)
    context = {"image": image, "neighbours": hits, "problem": problem, "query": SearchQuery()}
    return render(request, "search/image.html", context)
