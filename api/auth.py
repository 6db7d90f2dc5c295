"""Who may call what: staff endpoints take a token (``Authorization: Bearer``) or a staff
session (with its CSRF token, as for any form); search follows IMAGESEARCH_PUBLIC_SEARCH."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.errors import AuthenticationError
from ninja.security import HttpBearer, SessionAuthIsStaff

from gallery.permissions import search_allowed, sees_unindexed_images

from .tokens import api_token_user


class StaffToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        user = api_token_user(key=token)
        if user is not None and user.is_staff:
            request.user = user
            return user
        return None


STAFF = [StaffToken(), SessionAuthIsStaff()]


def caller(request: HttpRequest):
    """The signed-in user, or the one an API token acts for; None for anonymous callers."""
    if request.user.is_authenticated:
        return request.user
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return api_token_user(key=key.strip())
    return None


def caller_sees_unindexed(request: HttpRequest) -> bool:
    return sees_unindexed_images(caller(request))


def require_search_access(request: HttpRequest) -> None:
    """The search pages' rule (gallery.permissions), answered with a 401 instead of a redirect."""
    if not search_allowed(caller(request)):
        raise AuthenticationError(401, "Sign in or send an API token to search this library.")
