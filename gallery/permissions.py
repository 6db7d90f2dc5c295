"""Who may see the library: the rules that the search pages, the stored media and the JSON API
share (the API finds its caller by session or token; the pages by session)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse


def search_allowed(user) -> bool:
    """Search (and the images it shows) is public unless IMAGESEARCH_PUBLIC_SEARCH is off; then
    any signed-in user, or the user an API token acts for."""
    return bool(settings.IMAGESEARCH_PUBLIC_SEARCH or (user is not None and user.is_authenticated))


def sees_unindexed_images(user) -> bool:
    """Staff also see pending and failed images; everyone else only ready ones."""
    return bool(user is not None and user.is_staff)


def search_permitted(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A page for those :func:`search_allowed` admits; others are sent to sign in."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not search_allowed(request.user):
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper
