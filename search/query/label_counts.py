"""How many ready images carry each label: the library's most used labels, for the start page's
chips, the search page's filler chips and the API's label list.

Counting every label's images reads the whole library (slow in a large one), and every search
page's chips ask for it. Where counting is that slow, a web process reuses its last count: for a
minute, or 100 times as long as counting took (so that counting never takes more than 1% of its
time). A small library is counted afresh. An expired count keeps serving while one thread of the
process counts again, so that no page waits for a count but a process's very first one, which a
web server's master process makes before it forks its workers (imagesearch.gunicorn_conf), so
that they inherit it.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import connections
from django.db.models import Count, Q

from gallery.models import Image, Label

logger = logging.getLogger(__name__)

POPULAR_LABELS_SLOW_SECONDS = 0.02
POPULAR_LABELS_REUSE_SECONDS = 60.0
#: One count serves every caller asking for this many labels or fewer (the start page's and the
#: chips'): counting them all costs the same as counting a few.
POPULAR_LABELS_COUNTED = 24

# counted: (reused until, on time.monotonic(), which forked workers share with their master; rows)
_memo: dict[int, tuple[float, list[tuple[str, int]]]] = {}
_lock = threading.Lock()
_recount: threading.Thread | None = None  # the latest background count (tests wait for it)


def popular_labels(limit: int = 24) -> list[tuple[str, int]]:
    """Labels by how many ready images carry them, most first.

    In a large library (counting takes longer than ``POPULAR_LABELS_SLOW_SECONDS``) the counts
    may be a minute old, or older where counting is slower still (see above).
    """
    counted = max(limit, POPULAR_LABELS_COUNTED)
    memo = _memo.get(counted)
    if memo is None:
        return popular_labels_count(counted=counted)[:limit]
    if time.monotonic() >= memo[0]:
        _recount_start(counted, memo[1])
    return memo[1][:limit]


def popular_labels_count(*, counted: int = POPULAR_LABELS_COUNTED) -> list[tuple[str, int]]:
    """Count the ``counted`` most used labels now; remember the count where it was slow."""
    started = time.monotonic()
    rows = list(
        Label.objects.annotate(n=Count("images", filter=Q(images__status=Image.Status.READY)))
        .filter(n__gt=0)
        .order_by("-n", "name")
        .values_list("name", "n")[:counted]
    )
    took = time.monotonic() - started
    if took > POPULAR_LABELS_SLOW_SECONDS:
        reuse = max(POPULAR_LABELS_REUSE_SECONDS, 100 * took)
        _memo[counted] = (time.monotonic() + reuse, rows)
    else:
        _memo.pop(counted, None)
    return rows


def _recount_start(counted: int, rows: list[tuple[str, int]]) -> None:
    """Count again in a thread of this process, one at a time: the expired count serves meanwhile
    (for another reuse period if the count fails)."""
    global _recount
    with _lock:
        memo = _memo.get(counted)
        if memo is None or time.monotonic() < memo[0]:
            return  # counted meanwhile, or a thread is on it
        _memo[counted] = (time.monotonic() + POPULAR_LABELS_REUSE_SECONDS, rows)
        _recount = threading.Thread(target=_recount_run, args=(counted,), name="popular-labels", daemon=True)
        _recount.start()


def _recount_run(counted: int) -> None:
    try:
        popular_labels_count(counted=counted)
    except Exception:  # noqa: BLE001 - the expired count keeps serving; its next expiry tries again
        logger.warning("counting the popular labels failed", exc_info=True)
    finally:
        connections.close_all()  # this thread's own connections


def recount_wait(timeout: float | None = None) -> None:
    """Wait for the background count in progress, if any (tests)."""
    thread = _recount
    if thread is not None:
        thread.join(timeout)


def reset() -> None:
    """Forget every count (tests)."""
    recount_wait()
    _memo.clear()
