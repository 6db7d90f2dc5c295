"""Upload batches: the ids one upload added, remembered for a day under a token, so that the
upload page (and API clients) can follow how many are pending, ready and failed until the
batch is done."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from typing import Any

from django.core.cache import cache
from django.db.models import Count

from .models import Image

BATCH_TTL = 24 * 3600
_CHUNK = 5000  # ids per query (SQLite limits the parameters of one statement)
MAX_FAILURES_SHOWN = 50
TOKEN = re.compile(r"[0-9a-f]{32}")


def batch_remember(*, image_ids: Sequence[int]) -> str:
    token = secrets.token_hex(16)
    cache.set(f"upload-batch:{token}", [int(i) for i in image_ids], BATCH_TTL)
    return token


def batch_status(*, token: str) -> dict[str, Any] | None:
    """Counts of the batch's images by status (``deleted``: gone since), whether none is
    pending any more, and the failures with their reasons. None for an unknown token."""
    if not TOKEN.fullmatch(token):
        return None
    ids = cache.get(f"upload-batch:{token}")
    if ids is None:
        return None
    counts = dict.fromkeys(Image.Status.values, 0)
    failures: list[dict[str, Any]] = []
    for start in range(0, len(ids), _CHUNK):
        rows = Image.objects.filter(pk__in=ids[start : start + _CHUNK])
        for row in rows.order_by().values("status").annotate(n=Count("pk")):
            counts[row["status"]] += row["n"]
        if len(failures) < MAX_FAILURES_SHOWN:
            failed = rows.failed().order_by("pk").values("pk", "original_name", "failure_reason")
            failures += [
                {"id": f["pk"], "name": f["original_name"], "reason": f["failure_reason"]}
                for f in failed[: MAX_FAILURES_SHOWN - len(failures)]
            ]
    return {
        "total": len(ids),
        **counts,
        "deleted": len(ids) - sum(counts.values()),
        "done": counts[Image.Status.PENDING] == 0,
        "failures": failures,
    }
