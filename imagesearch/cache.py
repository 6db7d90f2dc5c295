"""A file cache whose ``add`` and ``incr`` are atomic across the processes of one machine.

Django's file cache reads and rewrites a value to increment it, so two web processes counting
one client's requests at the same instant may count once. The rate-limit counters
(search.query.throttle, django-ratelimit) live in this one: both operations hold an exclusive lock on
a file beside the cache, which the web processes of one machine share. Several machines share
a Redis instead (IMAGESEARCH_CACHE_URL), whose INCR is atomic.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache


class LockedFileBasedCache(FileBasedCache):
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self._dir, exist_ok=True)
        with open(os.path.join(self._dir, ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        with self._locked():
            return super().add(key, value, timeout, version)

    def incr(self, key, delta=1, version=None):
        with self._locked():
            return super().incr(key, delta, version)
