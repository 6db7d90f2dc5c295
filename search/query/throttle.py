"""Who a client is, and how often it may search: per-client rate limits (django-ratelimit),
counted apart for text queries, image queries and clip-retrieval's ``/knn-service``.

A client is its account when it is signed in or sends an API token, else its address: the
socket's, or the one a trusted reverse proxy puts in ``IMAGESEARCH_CLIENT_IP_HEADER``. IPv6
addresses count per /64 (one household or server holds a whole /64). Staff and token callers
have their own, higher limits (``IMAGESEARCH_RATE_LIMIT_STAFF_*``).
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage

from ..errors import QueryError

KINDS = ("text", "image", "knn")
_WHAT = {"text": "searches", "image": "image searches", "knn": "/knn-service calls"}
_PERIODS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}


# A client refused in this process stays refused until its window ends (a fixed window's count
# never goes down): remembered here, its next requests are refused without a cache read.
_refused: dict[tuple[str, str], tuple[float, str]] = {}
_refused_lock = threading.Lock()
_REFUSED_MAX = 10_000  # clients remembered per process; the oldest are forgotten first
# The Retry-After of this thread's last refusal, for the web server (imagesearch.gunicorn_worker).
_this_thread = threading.local()


class RateLimited(QueryError):
    """This client asked more often than its limit; ``retry_after`` is in seconds."""

    status_code = 429

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


def client_ip_of(request: HttpRequest) -> str:
    """The client's address: the trusted proxy header's (its last entry: the address the
    proxy itself saw) when configured and well-formed, else the socket's."""
    header = settings.IMAGESEARCH_CLIENT_IP_HEADER
    if header:
        candidate = request.headers.get(header, "").split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            pass  # not through the proxy (or a broken header): the socket's address it is
    return request.META.get("REMOTE_ADDR", "")


def axes_client_ip(request: HttpRequest) -> str | None:
    """django-axes's AXES_CLIENT_IP_CALLABLE: the same address, None where there is none (a
    request made in code, such as a test's force_login), which axes stores as such."""
    return client_ip_of(request) or None


def _client_key(request: HttpRequest, user) -> str:
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    address = client_ip_of(request) or "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"ip:{address}"
    if ip.version == 6:
        return f"ip:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"ip:{ip}"


def rate_for(kind: str, *, trusted: bool) -> str | None:
    """The configured limit of ``kind`` (None: no limit)."""
    name = f"IMAGESEARCH_RATE_LIMIT_{'STAFF_' if trusted else ''}{kind.upper()}"
    rate = getattr(settings, name)
    return None if rate == "off" else rate


def _limited(request: HttpRequest, kind: str, *, user, token: bool) -> None:
    trusted = token or (user is not None and user.is_authenticated and user.is_staff)
    rate = rate_for(kind, trusted=trusted)
    if rate is None:
        return
    key = _client_key(request, user)
    remembered = _refused.get((kind, key))
    if remembered is not None:
        left = remembered[0] - time.monotonic()
        if left > 0:
            raise _refusal(remembered[1], math.ceil(left))
        with _refused_lock:
            _refused.pop((kind, key), None)

    def usage(increment: bool):
        return get_usage(
            request, group=f"search-{kind}", key=lambda group, request: key, rate=rate, increment=increment
        )

    # Look first: a client over its limit costs one cache read per request, never a write. Then
    # count, and refuse what the count (atomic) puts over the limit: two requests that looked
    # at the same instant cannot both pass the last place.
    current = usage(False)
    if current is None:  # the cache could not answer: open (RATELIMIT_FAIL_OPEN)
        return
    if current["count"] < current["limit"]:
        current = usage(True)
        if current is None or not current["should_limit"]:
            return
    number, period = rate.split("/")
    unit = _PERIODS[period[-1]]
    per = f"{period[:-1]} {unit}s" if period[:-1] not in ("", "1") else unit
    retry_after = max(1, int(current["time_left"]))
    who = "this account" if key.startswith("user:") else "your address"
    head = f"Too many {_WHAT[kind]} from {who}: at most {number} per {per}."
    with _refused_lock:
        if len(_refused) >= _REFUSED_MAX:
            _refused.pop(next(iter(_refused)))
        _refused[(kind, key)] = (time.monotonic() + retry_after, head)
    raise _refusal(head, retry_after)


def _refusal(head: str, retry_after: int) -> RateLimited:
    _this_thread.retry_after = retry_after
    return RateLimited(
        f"{head} Try again in {retry_after} second{'s' if retry_after != 1 else ''}.",
        retry_after=retry_after,
    )


def refusal_taken() -> int | None:
    """The Retry-After of a refusal this thread made since the last call, or None (the web
    server asks after each request: imagesearch.gunicorn_worker)."""
    retry_after = getattr(_this_thread, "retry_after", None)
    _this_thread.retry_after = None
    return retry_after


def forget_refusals() -> None:
    """Forget the refusals this process remembers (tests, after the limits changed)."""
    with _refused_lock:
        _refused.clear()


def check(request: HttpRequest, kind: str, *, user=None, token: bool = False) -> None:
    """Count one ``kind`` request of this client; :class:`RateLimited` when it is over its
    limit (a refused request is not counted). ``user`` is the caller (the session's or the API
    token's), ``token`` whether it came with an API token: staff and token callers count against
    the staff limits."""
    _limited(request, kind, user=user, token=token)


def request_kind(request: HttpRequest) -> str | None:
    """Which limit a request to the search endpoints counts against, read from its path, method
    and query string (nothing of the body): None for anything else. A POST to the search page or
    ``/api/search`` is an image search (a POST without one is only redirected, cheaply)."""
    path, method = request.path, request.method
    if path == "/knn-service":
        return "knn" if method == "POST" else None
    if path in ("/", "/api/search"):
        if method == "POST":
            return "image"
        params = request.GET
        return (
            "text"
            if any(
                params.get(name)
                for name in ("q", "text", "like", "image_id", "qimg", "image_token", "label", "labels")
            )
            else None
        )
    return None
