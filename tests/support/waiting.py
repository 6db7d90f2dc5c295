"""Bounded waits for what other processes do: one generic poll, and the wait for uploaded images
to become searchable that the tests and the benchmarks share."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import TypeVar

from tests.support.constants import INDEXED_TIMEOUT

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], *, timeout: float = 60, interval: float = 0.1, what: str = "") -> T:
    """Poll ``predicate`` until it returns something true and return that; an AssertionError
    after ``timeout`` seconds (an exception from ``predicate`` ends the wait at once)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def wait_until_indexed(
    ids: Collection[int], *, timeout: float = INDEXED_TIMEOUT, interval: float = 0.1
) -> None:
    """Until every image of ``ids`` is ready and the current index generation agrees with the
    database (what the search page then serves). An image that failed fails the wait at once:
    nothing retries a failed image by itself."""
    # Imported when called: the benchmarks import this module before they set Django up.
    from gallery.models import Image
    from search.status import index_behind

    deadline = time.monotonic() + timeout
    wanted = set(ids)

    def ready() -> bool:
        images = Image.objects.filter(pk__in=wanted)
        failed = list(images.filter(status=Image.Status.FAILED).values_list("pk", "failure_reason")[:3])
        if failed:
            raise AssertionError(f"images failed to embed: {failed}")
        return images.filter(status=Image.Status.READY).count() == len(wanted)

    wait_for(ready, timeout=timeout, interval=interval, what=f"{len(wanted)} images ready")
    wait_for(
        lambda: not index_behind(),
        timeout=max(0.0, deadline - time.monotonic()),
        interval=interval,
        what=f"an index generation holding the {len(wanted)} images",
    )
