"""Whether the store is behind the rows, and what the status page and the API show: one dict."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Count

from gallery.models import Image, Label

from . import encoder
from .calibration.cutoffs import calibration_summary
from .models import IndexState
from .stores.selection import vector_store


def index_dimension() -> int | None:
    """The dimension of the vectors searches run against (None while nothing is indexed)."""
    return vector_store().dimension()


def index_behind() -> bool:
    """True when the store does not hold exactly what the database says it should."""
    return vector_store().behind()


def index_status() -> dict[str, Any]:
    """What the admin status page shows: the counts, the models, the store's own figures
    (``VectorStore.status_fields``, the same keys on both stores), the rebuild state and the
    cut-off's calibration."""
    counts = {status: 0 for status in Image.Status.values}
    for row in Image.objects.order_by().values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    store = vector_store()
    return {
        "counts": counts,
        "total": sum(counts.values()),
        **store.status_fields(),
        "behind": store.behind(),
        "state": IndexState.get(),
        "model": encoder.model_name(),
        "stale": Image.objects.stale(encoder.model_name()).count(),
        "text_model": encoder.text_model_name(),
        # Label vectors behind stored hybrids that another text model made (the setting changed).
        "labels_outdated": Label.objects.vectors_outdated(encoder.text_model_name()).count(),
        "model_error": encoder.last_load_error(),
        "encoder": encoder_summary(),
        "store": store.name,
        # The cut-off's last calibration (search.calibration): when, from what, its thresholds.
        "calibration": calibration_summary(),
    }


def encoder_summary() -> dict[str, Any]:
    """Which runtime serves in this process, where it runs, and the int8 figure when int8 is asked for."""
    described = encoder.describe()
    if described["provider"]:
        serving = f"{described['runtime']} on {described['provider']}, {described['precision']}"
    else:
        serving = f"{described['runtime']} (not loaded in this process yet)"
    return {**described, "serving": serving}


SUMMARY_FIELDS = (
    "counts", "total", "stale", "model", "text_model", "labels_outdated",
    "generation", "vectors", "dimension", "size_bytes", "kind", "requested_kind",
    "search_param", "search_param_value", "recall_text", "recall_image", "age_seconds", "behind",
    "calibration",
)  # fmt: skip


def status_summary() -> dict[str, Any]:
    """:func:`index_status` as plain JSON-able values (the admin status page polls it, the API
    serves it)."""
    status = index_status()
    state = status["state"]
    return {
        **{key: status[key] for key in SUMMARY_FIELDS},
        "model_error": status["model_error"] or "",
        "encoder": status["encoder"]["serving"],
        "int8_agreement": status["encoder"]["int8_agreement"],
        "int8_reason": status["encoder"]["int8_reason"],
        "rebuild_queued": state.queued,
        "last_rebuild_seconds": state.seconds,
        "index_error": status["reader"].get("last_error") or "",
    }


BEHIND_NOTICE = "The index is being updated; the newest changes may take a moment to show."


def search_notices() -> list[str]:
    """What a page of results says about images or changes it may be missing.

    Read afresh on every page (a notice appears the moment images wait or a rebuild is asked
    for), in one query: see :func:`notice_counts`."""
    notices = []
    pending, behind_requests = notice_counts()
    if pending:
        notices.append(f"{pending} image(s) are still being indexed and may be missing from the results.")
    notices.extend(vector_store().notices())
    if behind_requests and not pending:
        notices.append(BEHIND_NOTICE)
    return notices


def notice_counts() -> tuple[int, bool]:
    """(images still pending, whether a rebuild request is not served yet), in one query.

    Plain SQL: a page asks on every request, and the ORM's compiling of the same question (two
    queries, or one with a subquery) cost more than the database's answer."""
    quote = connection.ops.quote_name
    image, state = Image._meta, IndexState._meta
    status, requested, built = (
        quote(meta.get_field(name).column)
        for meta, name in ((image, "status"), (state, "requested"), (state, "done_request"))
    )
    sql = (
        f"SELECT (SELECT COUNT(*) FROM {quote(image.db_table)} WHERE {status} = %s),"
        f" (SELECT {requested} > {built} FROM {quote(state.db_table)} WHERE {quote(state.pk.column)} = %s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [Image.Status.PENDING, IndexState.JOB])
        pending, behind_requests = cursor.fetchone()
    return int(pending), bool(behind_requests)  # no index state row yet: no rebuild asked for
