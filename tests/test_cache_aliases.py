"""Query-image vectors (anyone may add them) and upload batches (staff follow them) live in
caches of their own: a flood of image searches never evicts a batch."""

from __future__ import annotations

import numpy as np
import pytest

from gallery.batches import batch_remember, batch_status
from search.query.vectors import recall_image, remember_image

pytestmark = pytest.mark.django_db


def test_a_flood_of_query_images_leaves_upload_batches_alone(settings, tmp_path):
    settings.CACHES = {
        alias: {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / alias),
            # Full means emptied: whatever shares a full cache is evicted, deterministically.
            "OPTIONS": {"MAX_ENTRIES": 10, "CULL_FREQUENCY": 0},
        }
        for alias in ("default", "query_vectors", "ratelimit")
    }
    token = batch_remember(image_ids=[])
    vector = np.ones(8, dtype=np.float32)
    tokens = [remember_image(f"query image {i}".encode(), vector) for i in range(40)]
    assert batch_status(token=token) is not None
    assert np.array_equal(recall_image(tokens[-1]), vector)


def _count(times: int) -> None:
    from django.core.cache import caches

    for _ in range(times):
        caches["ratelimit"].incr("counter")


def test_the_rate_limit_cache_counts_every_increment_of_concurrent_processes(settings, tmp_path):
    import multiprocessing

    from django.core.cache import caches

    settings.CACHES = {
        **settings.CACHES,
        "ratelimit": {"BACKEND": "imagesearch.cache.LockedFileBasedCache", "LOCATION": str(tmp_path / "rl")},
    }
    caches["ratelimit"].add("counter", 0, 600)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_count, args=(150,)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert caches["ratelimit"].get("counter") == 600
